"""A RouterCore over a fake VariantBackend (no Ray, no model), served by the real grpc_front.

For unit tests of what sits in front of the model replicas: auth, validation, limits,
streams. Vectors are a function of the text, so a test can check which answer is whose.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import numpy as np

from embedpool.server.config.catalogue import Catalogue
from embedpool.server.errors import EmbedpoolError
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import CountFn, no_count
from embedpool.server.service.core import RouterCore
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription
from tests.net import free_port

DIMS = 4
MODEL = "fake"
DEPLOYMENT = "fake--custom-cpu"


def vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)


class FakeBackend:
    """A VariantBackend: answers at once (or after ``delay``), records every text it embeds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[str] = []
        self.fail_with: Exception | None = None

    async def embed(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        self.seen += [t for item in items for t in item.texts]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return [
            EmbedOutput(
                vectors=np.stack([vector(t) for t in item.texts]),
                dimensions=DIMS,
                input_tokens=len(item.texts),
                truncated=0,
            )
            for item in items
        ]

    async def describe(self) -> VariantDescription:
        return VariantDescription(dimensions=DIMS, max_input_tokens=16, dtype="float32")

    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    async def ping(self) -> None:
        return None


def catalogue(
    max_inputs: int = 8, max_queued: int = 16, max_message_bytes: int = 4 * 1024 * 1024
) -> Catalogue:
    return Catalogue.model_validate(
        {
            "default_model": MODEL,
            "limits": {
                "max_inputs_per_request": max_inputs,
                "max_queued_requests": max_queued,
                "max_message_bytes": max_message_bytes,
            },
            "models": [
                {
                    "name": MODEL,
                    "source": "tests/unit/fake_backend.py",
                    "variants": [{"name": "custom-cpu", "backend": "custom", "class_path": "x:Y"}],
                }
            ],
        }
    )


@asynccontextmanager
async def serving(
    backend: FakeBackend | None = None,
    *,
    auth: TokenAuth | None = None,
    count: CountFn = no_count,
    **limits: int,
) -> AsyncIterator[tuple[str, RouterCore, FakeBackend]]:
    """The real grpc_front server over a RouterCore with a FakeBackend, on loopback."""
    backend = backend or FakeBackend()
    core = RouterCore(catalogue(**limits), {DEPLOYMENT: backend})
    port = free_port()
    server, health = await grpc_front.start_server(core, port, host="127.0.0.1", auth=auth, count=count)
    await grpc_front.set_health(health, grpc_front.health_statuses(core, {DEPLOYMENT: True}))
    try:
        yield f"127.0.0.1:{port}", core, backend
    finally:
        await server.stop(None)


class ProxyContext:
    """What RayServegRPCContext offers the Router's methods."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: list[tuple[str, str]] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailers: list[tuple[str, str]]) -> None:
        self.trailers = trailers
