"""A replica's end of the direct channel: a TCP listener that embeds Router batches.

It runs on the replica's event loop and calls the same batched `embed` as Serve's
handle path, so batches from both meet in one forward pass. A connection must open
with the replica's random token (published with its address); bodies are JSON and
raw vector bytes, never pickle (wire.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from embedpool.server.direct import wire as replica_wire
from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput

# (items, beside): beside when the Router had another batch out to this replica as it sent it.
EmbedFn = Callable[[list[EmbedItem], bool], Awaitable[list[EmbedOutput | EmbedpoolError]]]
log = logging.getLogger("embedpool")
_MAX_HELLO = 1024


class DirectServer:
    def __init__(self, embed: EmbedFn) -> None:
        self._embed = embed
        self.token = secrets.token_urlsafe(24)
        self.ongoing = 0  # batches read and not yet answered
        # Batch-nanoseconds held since the last mean_ongoing(): the autoscaler gets the mean over
        # time, since a sample taken between two forward passes (the model runs on the event
        # loop, which answers the sample) would mostly find nothing held.
        self._area = 0
        self._mark = self._window = time.monotonic_ns()
        self.address = ""
        self._server: asyncio.Server | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str) -> str:
        """Listen on an ephemeral port of `host` (the node's IP); returns host:port."""
        self._server = await asyncio.start_server(self._serve_connection, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        return self.address

    async def stop(self, grace: float) -> None:
        """Take no new connections, let batches under way answer (up to `grace` s), then hang up."""
        if self._server is None:
            return
        self._server.close()
        if self._batches and grace > 0:
            await asyncio.wait(set(self._batches), timeout=grace)
        for writer in list(self._writers):
            writer.close()
        for task in list(self._batches):
            task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:  # a peer that opens with anything but a short HELLO is refused unread
                kind, _, token = await replica_wire.read_frame(reader, max_size=_MAX_HELLO)
            except replica_wire.WireError:
                kind, token = 0, b""
            if kind != replica_wire.HELLO or not hmac.compare_digest(token, self.token.encode()):
                writer.writelines(
                    replica_wire.refused(0, replica_wire.UNAUTHENTICATED, "not a Router of this pool")
                )
                await writer.drain()
                return
            while True:
                kind, request_id, payload = await replica_wire.read_frame(reader)
                if kind not in (replica_wire.BATCH, replica_wire.BESIDE):
                    return  # not a peer of this protocol: hang up
                # Counted as it is read: frames that came in together are all counted before the
                # first runs, so the replica merges them into one forward pass (replica.py).
                self._add(1)
                beside = kind == replica_wire.BESIDE
                task = asyncio.get_running_loop().create_task(
                    self._answer(writer, request_id, payload, beside)
                )
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the Router went away; its batches under way finish and are dropped
        finally:
            self._writers.discard(writer)
            writer.close()

    def _add(self, batches: int) -> None:
        now = time.monotonic_ns()
        self._area += self.ongoing * (now - self._mark)
        self._mark = now
        self.ongoing += batches

    def mean_ongoing(self) -> float:
        """Batches held on average since the last call (Little's law: arrivals x time held)."""
        self._add(0)
        elapsed = self._mark - self._window
        mean = self._area / elapsed if elapsed > 0 else float(self.ongoing)
        self._area, self._window = 0, self._mark
        return mean

    async def _answer(
        self, writer: asyncio.StreamWriter, request_id: int, payload: bytes, beside: bool
    ) -> None:
        try:
            items = replica_wire.decode_items(payload)
            results = await self._embed(items, beside)
            answer = replica_wire.frame(
                replica_wire.RESULTS, request_id, replica_wire.encode_results(results)
            )
        except replica_wire.WireError as exc:
            answer = replica_wire.refused(request_id, replica_wire.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # the batch's error, not the connection's: the Router raises it
            log.exception("direct batch failed")
            message = f"{type(exc).__name__}: {exc}"
            answer = replica_wire.refused(request_id, replica_wire.UNKNOWN, message)
        finally:
            self._add(-1)
        if not writer.is_closing():
            writer.writelines(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
