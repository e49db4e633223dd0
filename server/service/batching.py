"""Continuous batching in front of one model variant.

Concurrent small requests are merged into one hop to the model replicas: while
`max_in_flight` batches are out, new requests wait here and leave together as
soon as a slot frees. An idle pool sends a lone request at once (no added
latency), a busy one sends everything that queued meanwhile (big batches).
Ray's per-call cost is paid per batch, not per request.

Closed-loop callers re-send only after their answer lands, so right after a
batch of n requests returns, the queue is nearly empty and the next batch would
be tiny, the one after it big, and so on. So when a slot frees, the dispatcher
waits (at most `regroup_s`) until as many requests are queued as the batch that
just returned held: a steady load keeps its batch size; one caller sending back
to back waits for nothing (its next request makes the count).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np
from opentelemetry.trace import Span, SpanContext

from embedpool.server import tracing
from embedpool.server.errors import DeadlineExceeded, EmbedpoolError, Overloaded
from embedpool.server.types import EmbedItem, EmbedOutput

SendFn = Callable[[list[EmbedItem]], Awaitable[list["EmbedOutput | EmbedpoolError"]]]
Pending = tuple[EmbedItem, "asyncio.Future[EmbedOutput]", "float | None", "Traced | None"]
Taken = tuple[EmbedItem, "asyncio.Future[EmbedOutput]", "Traced | None"]


@dataclass(slots=True)
class Traced:
    """A traced request's queue-wait span and its caller's span (what the batch links to)."""

    queue: Span | None
    caller: SpanContext | None


class Dispatcher:
    def __init__(
        self,
        send: SendFn,
        *,
        max_batch_texts: int,
        max_in_flight: int,
        max_queued_requests: int,
        name: str = "",
        regroup_s: float = 0.005,
    ) -> None:
        self._send = send
        self.max_batch_texts = max(1, max_batch_texts)
        self.max_in_flight = max(1, max_in_flight)
        self.max_queued_requests = max_queued_requests
        self.name = name
        # (item, future, deadline as monotonic seconds or None, its queue span when traced)
        self._pending: deque[Pending] = deque()
        self._in_flight = 0
        self.batches_sent = 0
        self.regroup_s = regroup_s
        self._expect = 0  # requests in the batch that last returned
        self._regroup: asyncio.TimerHandle | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, item: EmbedItem, deadline: float | None = None) -> EmbedOutput:
        """Embed one request; big ones are cut into batch-sized chunks sent side by side.

        A big request is cut after ordering its texts by length, so each chunk holds texts of
        about one length and its forward pass pads little (arrival order mixes a long text into
        every chunk, padding its 31 neighbours up to it); the rows are put back in request order.
        """
        if len(item.texts) <= self.max_batch_texts:
            return await self._enqueue(item, deadline)
        step = self.max_batch_texts
        order = sorted(range(len(item.texts)), key=lambda i: len(item.texts[i]))
        texts = [item.texts[i] for i in order]
        chunks = [replace(item, texts=texts[i : i + step]) for i in range(0, len(texts), step)]
        futures: list[asyncio.Future[EmbedOutput]] = []
        try:
            for chunk in chunks:
                futures.append(self._enqueue(chunk, deadline))
            parts = await asyncio.gather(*futures)
        except BaseException:
            for fut in futures:  # a queued chunk whose sibling failed is dropped unsent
                fut.cancel()
            raise
        joined = np.concatenate([p.vectors for p in parts])
        vectors = np.empty_like(joined)
        vectors[np.asarray(order)] = joined  # row k of the sorted texts is the request's order[k]
        return EmbedOutput(
            vectors=vectors,
            dimensions=parts[0].dimensions,
            input_tokens=sum(p.input_tokens for p in parts),
            truncated=sum(p.truncated for p in parts),
            # side by side: the caller waited for the slowest chunk, not for their sum
            queue_ns=max(p.queue_ns for p in parts),
            inference_ns=max(p.inference_ns for p in parts),
        )

    def _enqueue(self, item: EmbedItem, deadline: float | None) -> asyncio.Future[EmbedOutput]:
        if len(self._pending) >= self.max_queued_requests:
            raise Overloaded(
                f"model variant {self.name} has {len(self._pending)} requests queued (the limit); "
                "retry with backoff or add replicas"
            )
        fut: asyncio.Future[EmbedOutput] = asyncio.get_running_loop().create_future()
        traced = None
        if tracing.on():
            traced = Traced(
                tracing.start("embedpool queue", {"embedpool.texts": len(item.texts)}), tracing.current()
            )
        self._pending.append((item, fut, deadline, traced))
        self._dispatch()
        return fut

    def _take_batch(self) -> list[Taken]:
        batch: list[Taken] = []
        texts = 0
        now = time.monotonic()
        while self._pending:
            item, fut, deadline, traced = self._pending[0]
            if fut.done():  # the caller went away: drop its work before it costs anything
                self._pending.popleft()
                _end_queue(traced, "cancelled")
                continue
            if deadline is not None and now >= deadline:
                self._pending.popleft()
                fut.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
                _end_queue(traced, "deadline")
                continue
            if batch and texts + len(item.texts) > self.max_batch_texts:
                break
            self._pending.popleft()
            _end_queue(traced, "batched")
            batch.append((item, fut, traced))
            texts += len(item.texts)
        return batch

    def _flush(self) -> None:
        self._regroup = None
        self._expect = 0
        self._dispatch()

    def _dispatch(self) -> None:
        if self._regroup is not None:
            if len(self._pending) < self._expect:
                return  # still regrouping; the timer or the next arrival calls again
            self._regroup.cancel()
            self._regroup = None
        while self._in_flight < self.max_in_flight and self._pending:
            batch = self._take_batch()
            if not batch:
                return
            self._in_flight += 1
            self.batches_sent += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[Taken]) -> None:
        try:
            callers = [t.caller for _, _, t in batch if t is not None and t.caller is not None]
            # The batch continues its first traced caller's trace and links to every caller's span.
            with tracing.span(
                "embedpool batch",
                parent=callers[0] if callers else None,
                links=callers,
                attributes={
                    "embedpool.variant": self.name,
                    "embedpool.batch.requests": len(batch),
                    "embedpool.batch.texts": sum(len(item.texts) for item, _, _ in batch),
                },
            ):
                results = await self._send([item for item, _, _ in batch])
        except BaseException as exc:  # the whole hop failed: every request in it gets the error
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, fut, _), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        finally:
            self._in_flight -= 1
            self._expect = len(batch)
            if self.regroup_s > 0 and len(self._pending) < self._expect and self._regroup is None:
                loop = asyncio.get_running_loop()
                self._regroup = loop.call_later(self.regroup_s, self._flush)
            self._dispatch()


def _end_queue(traced: Traced | None, outcome: str) -> None:
    if traced is not None and traced.queue is not None:
        traced.queue.set_attribute("embedpool.queue.outcome", outcome)
        traced.queue.end()
