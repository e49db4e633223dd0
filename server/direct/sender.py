"""Router -> replica batches over a direct gRPC channel, with the Serve handle as fallback.

A Serve handle call cost ~7 ms of latency and ~6 ms of Router CPU per batch on the
2-core bench machine (BENCHMARKS.md); a grpc.aio unary call between two processes
~0.9 ms and ~0.4 ms. So each replica also listens on a port of its own (published in
Ray's GCS, serving/registry.py) and the Router sends Embed batches there. Ray Serve
still places, scales, health-checks and restarts the replicas; the handle remains the
path for everything else and the fallback whenever no direct endpoint is free: at
startup, from zero replicas (the handle's queued request is what wakes the deployment),
when every endpoint has `max_ongoing` batches out, and when a direct call fails before
the replica answered (a dead replica: the batch is re-sent once through the handle,
which is safe since embedding has no side effects).

Ray-free: the Router feeds `update()` with what the registry lists.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from embedpool.server import tracing
from embedpool.server.direct import wire as replica_wire
from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription

if TYPE_CHECKING:
    from embedpool.server.service.backend import VariantBackend

log = logging.getLogger("embedpool")

# Codes after which the batch can be re-sent: the replica did no work we will receive.
_RESEND = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,  # a stale token: the replica was replaced at that address
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.CANCELLED,
}
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),  # the Router already holds callers to the pool's limit
    ("grpc.max_receive_message_length", -1),
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One replica's published endpoint (serving/registry.py reads them from Ray's GCS)."""

    deployment: str
    replica_id: str
    address: str
    token: str
    published: float


class Endpoint:
    def __init__(self, entry: Entry) -> None:
        self.replica_id = entry.replica_id
        self.address = entry.address
        self.published = entry.published
        self.metadata = ((replica_wire.TOKEN_HEADER, entry.token),)
        self.channel = grpc.aio.insecure_channel(entry.address, options=CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(
            replica_wire.EMBED_METHOD, request_serializer=None, response_deserializer=None
        )
        self.in_flight = 0


class DirectVariantBackend:
    """A VariantBackend that embeds over direct channels and does the rest through `fallback`."""

    def __init__(self, name: str, fallback: VariantBackend, max_ongoing: int) -> None:
        self.name = name
        self.fallback = fallback
        self.max_ongoing = max(1, max_ongoing)
        self.endpoints: dict[str, Endpoint] = {}
        self._failed: dict[str, float] = {}  # replica id -> the publication that failed
        self._turn = itertools.count()
        self._closing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.direct_batches = 0
        self.fallback_batches = 0

    def update(self, entries: Iterable[Entry]) -> None:
        """Make the live set of endpoints the given registry entries of this variant."""
        seen: set[str] = set()
        listed: set[str] = set()
        for entry in entries:
            listed.add(entry.replica_id)
            if self._failed.get(entry.replica_id, -1.0) >= entry.published:
                continue  # failed since its last heartbeat: wait for a newer one
            seen.add(entry.replica_id)
            current = self.endpoints.get(entry.replica_id)
            if current is not None and current.address == entry.address:
                current.published = entry.published
                continue
            if current is not None:
                self._close(current)
            self.endpoints[entry.replica_id] = Endpoint(entry)
        for replica_id in list(self.endpoints):
            if replica_id not in seen:
                self._close(self.endpoints.pop(replica_id))
        self._failed = {rid: ts for rid, ts in self._failed.items() if rid in listed}

    def _close(self, endpoint: Endpoint) -> None:
        """Close once its calls in flight are done (at most 30 s)."""
        task = asyncio.get_running_loop().create_task(endpoint.channel.close(grace=30))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _pick(self) -> Endpoint | None:
        free = [e for e in self.endpoints.values() if e.in_flight < self.max_ongoing]
        if not free:
            return None
        least = min(e.in_flight for e in free)
        ties = [e for e in free if e.in_flight == least]
        return ties[next(self._turn) % len(ties)]

    async def embed(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        endpoint = self._pick()
        if endpoint is None:
            return await self._fall_back(items)
        with tracing.span("embedpool hop", kind=tracing.CLIENT, attributes={"embedpool.path": "direct"}):
            if tracing.on():
                tracing.mark(items)
            result = await self._send(endpoint, items)
        return result if result is not None else await self._fall_back(items)

    async def _fall_back(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        self.fallback_batches += 1
        return await self.fallback.embed(items)

    async def _send(
        self, endpoint: Endpoint, items: list[EmbedItem]
    ) -> list[EmbedOutput | EmbedpoolError] | None:
        """The batch over the direct channel; None when it must go through Ray instead."""
        payload = replica_wire.encode_items(items)
        endpoint.in_flight += 1
        try:
            data = await endpoint.call(payload, metadata=endpoint.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _RESEND:
                raise EmbedpoolError(
                    f"model variant {self.name}: replica call failed: {exc.code().name}: {exc.details()}"
                ) from exc
            log.warning(
                "%s: direct call to %s failed (%s); re-sending through Ray",
                self.name,
                endpoint.address,
                exc.code().name,
            )
            self._forget(endpoint)
        else:
            self.direct_batches += 1
            return replica_wire.decode_results(data)
        finally:
            endpoint.in_flight -= 1
        return None

    def _forget(self, endpoint: Endpoint) -> None:
        if self.endpoints.get(endpoint.replica_id) is endpoint:
            self._failed[endpoint.replica_id] = endpoint.published
            self._close(self.endpoints.pop(endpoint.replica_id))

    async def describe(self) -> VariantDescription:
        return await self.fallback.describe()

    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]:
        return await self.fallback.count_tokens(texts, input_type, prompt, prompt_name)

    async def ping(self) -> None:
        await self.fallback.ping()
