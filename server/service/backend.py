"""How the service core reaches one model variant.

In the pool: the direct channel (direct/sender.py) with a Ray Serve handle
(serving/handle_backend.py) as its fallback; in unit tests, the real core over a
fake model (tests/unit/fake_backend.py).
"""

from __future__ import annotations

from typing import Protocol

from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription


class VariantBackend(Protocol):
    async def embed(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]: ...
    async def describe(self) -> VariantDescription: ...
    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]: ...
    async def ping(self) -> None: ...
