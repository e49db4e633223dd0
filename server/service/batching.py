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

Batches are capped by tokens as well as texts (``max_batch_tokens``, estimated here from
each text's UTF-8 length, counted exactly by the model layer), so one hop of long texts
stays short. Small requests (a query, a few texts) go first: they wait in a lane of their
own and fill each batch before bulk work does, so a flood of long documents does not hold a
query back for the whole queue (measured: a one-text call beside 4 callers of 64 texts of
200 words waited 9 s behind them in one FIFO queue). A bulk request that has waited
``bulk_after_s`` goes first in its turn, so bulk work is never starved.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np
from opentelemetry.trace import Span, SpanContext

from embedpool.server import tracing
from embedpool.server.errors import DeadlineExceeded, EmbedpoolError, InvalidArgument, Overloaded
from embedpool.server.types import EmbedItem, EmbedOutput

SendFn = Callable[[list[EmbedItem]], Awaitable[list["EmbedOutput | EmbedpoolError"]]]
Taken = tuple[EmbedItem, "asyncio.Future[EmbedOutput]", "Traced | None"]
# The longest estimate one text gets: no model here takes more tokens per input.
MAX_TEXT_TOKENS_ESTIMATE = 512


def estimate_tokens(text: str) -> int:
    """Tokens a text will take, roughly, without its tokenizer: ~4 UTF-8 bytes per token holds for
    English (~4 characters a token) and CJK (3 bytes a character, ~1 token a character)."""
    return min(MAX_TEXT_TOKENS_ESTIMATE, len(text.encode("utf-8", "surrogatepass")) // 4 + 2)


@dataclass(slots=True)
class Pending:
    item: EmbedItem
    future: asyncio.Future[EmbedOutput]
    deadline: float | None  # monotonic seconds
    traced: Traced | None
    tokens: int  # estimated
    queued_at: float  # monotonic seconds


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
        max_batch_tokens: int = 16384,
        name: str = "",
        regroup_s: float = 0.005,
        bulk_after_s: float = 2.0,
    ) -> None:
        self._send = send
        self.max_batch_texts = max(1, max_batch_texts)
        self.max_batch_tokens = max(1, max_batch_tokens)
        # A request of at most this many (estimated) tokens is small: it waits in the first lane.
        self.small_tokens = max(MAX_TEXT_TOKENS_ESTIMATE, self.max_batch_tokens // 8)
        self.bulk_after_s = bulk_after_s
        self.max_in_flight = max(1, max_in_flight)
        self.max_queued_requests = max_queued_requests
        self.name = name
        self._small: deque[Pending] = deque()
        self._bulk: deque[Pending] = deque()
        self._in_flight = 0
        # Batches of bulk work alone keep one slot free (when there are two or more), so a small
        # request waits for the batch the replica is running, not also for the one queued behind it.
        self._bulk_in_flight = 0
        self.bulk_slots = max(1, self.max_in_flight - 1)
        self.batches_sent = 0
        self.regroup_s = regroup_s
        self._expect = 0  # requests in the batch that last returned
        self._regroup: asyncio.TimerHandle | None = None

    @property
    def queued(self) -> int:
        return len(self._small) + len(self._bulk)

    async def submit(self, item: EmbedItem, deadline: float | None = None) -> EmbedOutput:
        """Embed one request; big ones are cut into batch-sized chunks sent side by side.

        A big request is cut after ordering its texts by length, so each chunk holds texts of
        about one length and its forward pass pads little (arrival order mixes a long text into
        every chunk, padding its 31 neighbours up to it); the rows are put back in request order.
        """
        tokens = [estimate_tokens(text) for text in item.texts]
        if len(item.texts) <= self.max_batch_texts and sum(tokens) <= self.max_batch_tokens:
            return await self._enqueue(item, deadline, sum(tokens))
        order = sorted(range(len(item.texts)), key=lambda i: (tokens[i], len(item.texts[i])))
        spans = self._cut(order, tokens)
        futures: list[asyncio.Future[EmbedOutput]] = []
        try:
            for start, end in spans:
                chunk = replace(item, texts=[item.texts[i] for i in order[start:end]])
                futures.append(self._enqueue(chunk, deadline, sum(tokens[i] for i in order[start:end])))
            await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
            for (start, _), fut in zip(spans, futures, strict=True):
                if fut.done() and not fut.cancelled() and fut.exception() is not None:
                    raise _in_request_terms(fut.exception(), order, start)  # type: ignore[arg-type]
            parts = [fut.result() for fut in futures]
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

    def _cut(self, order: list[int], tokens: list[int]) -> list[tuple[int, int]]:
        """[start, end) spans of ``order`` within the text and token budgets (at least one text each)."""
        spans: list[tuple[int, int]] = []
        start, held = 0, 0
        for position, index in enumerate(order):
            if position > start and (
                position - start >= self.max_batch_texts or held + tokens[index] > self.max_batch_tokens
            ):
                spans.append((start, position))
                start, held = position, 0
            held += tokens[index]
        spans.append((start, len(order)))
        return spans

    def _enqueue(self, item: EmbedItem, deadline: float | None, tokens: int) -> asyncio.Future[EmbedOutput]:
        if self.queued >= self.max_queued_requests:
            raise Overloaded(
                f"model variant {self.name} has {self.queued} requests queued (the limit); "
                "retry with backoff or add replicas"
            )
        fut: asyncio.Future[EmbedOutput] = asyncio.get_running_loop().create_future()
        traced = None
        if tracing.on():
            traced = Traced(
                tracing.start("embedpool queue", {"embedpool.texts": len(item.texts)}), tracing.current()
            )
        lane = self._small if tokens <= self.small_tokens else self._bulk
        lane.append(Pending(item, fut, deadline, traced, tokens, time.monotonic()))
        self._dispatch()
        return fut

    def _take_batch(self, with_bulk: bool) -> tuple[list[Taken], bool]:
        """The next batch, and whether it holds bulk work alone."""
        batch: list[Taken] = []
        texts = tokens = 0
        small = False
        now = time.monotonic()
        lanes: tuple[deque[Pending], ...] = (self._small, self._bulk) if with_bulk else (self._small,)
        if with_bulk and self._bulk and now - self._bulk[0].queued_at >= self.bulk_after_s:
            lanes = (self._bulk, self._small)  # bulk work waited long enough: its turn first
        for lane in lanes:
            while lane:
                p = lane[0]
                if p.future.done():  # the caller went away: drop its work before it costs anything
                    lane.popleft()
                    _end_queue(p.traced, "cancelled")
                    continue
                if p.deadline is not None and now >= p.deadline:
                    lane.popleft()
                    p.future.set_exception(
                        DeadlineExceeded("the request's deadline passed while it was queued")
                    )
                    _end_queue(p.traced, "deadline")
                    continue
                if batch and (
                    texts + len(p.item.texts) > self.max_batch_texts
                    or tokens + p.tokens > self.max_batch_tokens
                ):
                    break
                lane.popleft()
                _end_queue(p.traced, "batched")
                batch.append((p.item, p.future, p.traced))
                texts += len(p.item.texts)
                tokens += p.tokens
                small = small or lane is self._small
        return batch, not small

    def _flush(self) -> None:
        self._regroup = None
        self._expect = 0
        self._dispatch()

    def _dispatch(self) -> None:
        if self._regroup is not None:
            if self.queued < self._expect:
                return  # still regrouping; the timer or the next arrival calls again
            self._regroup.cancel()
            self._regroup = None
        while self._in_flight < self.max_in_flight and self.queued:
            with_bulk = self._bulk_in_flight < self.bulk_slots
            if not with_bulk and not self._small:
                return  # only bulk work waits, and it holds its slots: the last stays free
            batch, bulk_only = self._take_batch(with_bulk)
            if not batch:
                return
            self._in_flight += 1
            self._bulk_in_flight += bulk_only
            self.batches_sent += 1
            asyncio.get_running_loop().create_task(self._run(batch, bulk_only))

    async def _run(self, batch: list[Taken], bulk_only: bool = False) -> None:
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
            self._bulk_in_flight -= bulk_only
            self._expect = len(batch)
            if self.regroup_s > 0 and self.queued < self._expect and self._regroup is None:
                loop = asyncio.get_running_loop()
                self._regroup = loop.call_later(self.regroup_s, self._flush)
            self._dispatch()


def _end_queue(traced: Traced | None, outcome: str) -> None:
    if traced is not None and traced.queue is not None:
        traced.queue.set_attribute("embedpool.queue.outcome", outcome)
        traced.queue.end()


_OVER_LONG = re.compile(r"^input (\d+) has ")


def _in_request_terms(error: BaseException, order: list[int], start: int) -> BaseException:
    """A chunk's error as the caller's request would have it: an over-long input named by its
    index in the request, not in the length-sorted chunk."""
    match = _OVER_LONG.match(str(error)) if isinstance(error, InvalidArgument) else None
    if match is None:
        return error
    index = order[start + int(match.group(1))]
    return InvalidArgument(_OVER_LONG.sub(f"input {index} has ", str(error), count=1))
