"""Router -> replica batches over a direct TCP channel, with the Serve handle as fallback.

A Serve handle call cost ~7 ms of latency and ~6 ms of Router CPU per batch on the
2-core bench machine (BENCHMARKS.md); a grpc.aio unary call between two processes
~0.6 ms, and a frame on a kept-open asyncio connection ~0.1 ms. So each replica also
listens on a port of its own (published in Ray's GCS, serving/registry.py) and the
Router sends Embed batches there, many at once on one connection (wire.py). Ray Serve
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
import contextlib
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedpool.server import tracing
from embedpool.server.direct import wire as replica_wire
from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription

if TYPE_CHECKING:
    from embedpool.server.service.backend import VariantBackend

log = logging.getLogger("embedpool")

# Statuses after which the batch can be re-sent: the replica did no work we will receive.
_RESEND = {replica_wire.UNAVAILABLE, replica_wire.UNAUTHENTICATED}  # unauthenticated: a stale token
CONNECT_TIMEOUT_S = 5.0


class ChannelError(Exception):
    """A direct call that got no results: the status (wire.py's names) and why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class Entry:
    """One replica's published endpoint (serving/registry.py reads them from Ray's GCS)."""

    deployment: str
    replica_id: str
    address: str
    token: str
    published: float


class Connection:
    """One open connection to a replica: batches go out as frames, answers come back by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self._reading = asyncio.get_running_loop().create_task(self._read(reader))

    @classmethod
    async def open(cls, address: str, token: str) -> Connection:
        host, port = address.rsplit(":", 1)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), CONNECT_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise ChannelError(replica_wire.UNAVAILABLE, f"cannot connect: {exc!r}") from exc
        writer.writelines(replica_wire.frame(replica_wire.HELLO, 0, token.encode()))
        return cls(reader, writer)

    async def request(self, payload: bytes, kind: int = replica_wire.BATCH) -> bytes:
        if self.closed:
            raise ChannelError(replica_wire.UNAVAILABLE, "connection closed")
        request_id = next(self._ids)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            self._writer.writelines(replica_wire.frame(kind, request_id, payload))
            await self._writer.drain()
            return await answer
        except ConnectionError as exc:
            raise ChannelError(replica_wire.UNAVAILABLE, f"connection lost: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        failure = ChannelError(replica_wire.UNAVAILABLE, "the replica closed the connection")
        try:
            while True:
                kind, request_id, payload = await replica_wire.read_frame(reader)
                if kind == replica_wire.REFUSED and request_id == 0:  # the connection as a whole
                    failure = ChannelError(*replica_wire.read_refusal(payload))
                    break
                answer = self._pending.get(request_id)
                if answer is None or answer.done():
                    continue  # its caller gave up (deadline, cancellation)
                if kind == replica_wire.RESULTS:
                    answer.set_result(payload)
                elif kind == replica_wire.REFUSED:
                    answer.set_exception(ChannelError(*replica_wire.read_refusal(payload)))
                else:
                    failure = ChannelError(replica_wire.UNAVAILABLE, f"unexpected frame kind {kind}")
                    break
        except (asyncio.IncompleteReadError, ConnectionError, replica_wire.WireError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                failure = ChannelError(replica_wire.UNAVAILABLE, f"connection lost: {exc!r}")
        finally:
            self.closed = True
            self._writer.close()
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(failure)

    async def close(self) -> None:
        self._writer.close()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._reading


class Endpoint:
    def __init__(self, entry: Entry) -> None:
        self.replica_id = entry.replica_id
        self.address = entry.address
        self.published = entry.published
        self.token = entry.token
        self.in_flight = 0
        self._connection: Connection | None = None
        self._connecting = asyncio.Lock()

    async def call(self, payload: bytes, kind: int = replica_wire.BATCH) -> bytes:
        """The replica's answer to one batch (a BATCH or BESIDE frame); ChannelError when it gave none."""
        connection = self._connection
        if connection is None or connection.closed:
            async with self._connecting:  # one connection, however many batches start together
                if self._connection is None or self._connection.closed:
                    self._connection = await Connection.open(self.address, self.token)
                connection = self._connection
        return await connection.request(payload, kind)

    async def close(self, grace: float) -> None:
        """Close once its calls in flight are done (at most `grace` s)."""
        deadline = asyncio.get_running_loop().time() + grace
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self._connection is not None:
            await self._connection.close()


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
        task = asyncio.get_running_loop().create_task(endpoint.close(grace=30))
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
        # Another batch of ours is still out there: the replica may run this one beside it.
        kind = replica_wire.BESIDE if endpoint.in_flight else replica_wire.BATCH
        endpoint.in_flight += 1
        try:
            data = await endpoint.call(payload, kind)
        except ChannelError as exc:
            if exc.status not in _RESEND:
                raise EmbedpoolError(
                    f"model variant {self.name}: replica call failed: {exc.status}: {exc.message}"
                ) from exc
            log.warning(
                "%s: direct call to %s failed (%s); re-sending through Ray", self.name, endpoint.address, exc
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
