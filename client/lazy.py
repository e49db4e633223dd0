"""LazyClients: the blocking client and an asyncio client per event loop, made on first use.

For adapters that hand one settings object to code that may call it from plain threads and
from several event loops in turn (LlamaIndex, LangChain, ``asyncio.run`` twice): a grpc.aio
channel belongs to the loop it was made on, so each running loop gets its own client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .async_client import AsyncEmbeddingClient
from .sync_client import EmbeddingClient

__all__ = ["LazyClients"]


class LazyClients:
    """``LazyClients(**kwargs)`` keeps the keyword arguments of either client's constructor."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._sync: EmbeddingClient | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncEmbeddingClient] | None = None

    @property
    def sync(self) -> EmbeddingClient:
        """The blocking client (made once)."""
        if self._sync is None:
            self._sync = EmbeddingClient(**self._kwargs)
        return self._sync

    @property
    def made_sync(self) -> bool:
        """Whether the blocking client (and so its threads) exists yet."""
        return self._sync is not None

    def for_running_loop(self) -> AsyncEmbeddingClient:
        """The asyncio client of the running loop; a new one when the loop changed."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, AsyncEmbeddingClient(**self._kwargs))
        return self._async[1]

    def close(self) -> None:
        """Close the blocking client; an asyncio client goes with its loop."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
