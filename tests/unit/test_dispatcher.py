"""The router's continuous batcher: coalescing, order, limits, failures, cancellation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from embedpool.server.errors import EmbedpoolError, InvalidArgument, Overloaded, Unavailable
from embedpool.server.service.batching import Dispatcher, estimate_tokens
from embedpool.server.types import EmbedItem, EmbedOutput


class SlowModel:
    """Echoes each text's length as a 1-d vector; records the batches it got."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []  # texts per request, per batch
        self.seen: list[str] = []
        self.fail_with: BaseException | None = None

    async def __call__(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        self.batches.append([len(i.texts) for i in items])
        self.seen += [t for i in items for t in i.texts]
        await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        out: list[EmbedOutput | EmbedpoolError] = []
        for item in items:
            if "bad" in item.texts:
                out.append(InvalidArgument("bad input"))
            else:
                vec = np.array([[float(len(t))] for t in item.texts], dtype=np.float32)
                out.append(EmbedOutput(vectors=vec, dimensions=1, input_tokens=len(item.texts), truncated=0))
        return out


def make(model: SlowModel, **kw: int) -> Dispatcher:
    opts = {"max_batch_texts": 64, "max_in_flight": 1, "max_queued_requests": 1000} | kw
    return Dispatcher(model, **opts)


async def test_concurrent_requests_coalesce_into_few_batches() -> None:
    model = SlowModel()
    d = make(model)
    outs = await asyncio.gather(*(d.submit(EmbedItem(texts=["x" * i])) for i in range(1, 33)))
    assert [o.vectors[0, 0] for o in outs] == list(range(1, 33))  # each caller gets its own answer
    assert model.batches[0] == [1]  # an idle pool sends the first request at once
    assert len(model.batches) == 2 and sum(model.batches[1]) == 31  # the rest rode together


async def test_batches_respect_the_text_budget_and_big_requests_are_split() -> None:
    model = SlowModel(delay=0)
    d = make(model, max_batch_texts=8, max_in_flight=4)
    out = await d.submit(EmbedItem(texts=["x" * (i % 5 + 1) for i in range(30)]))
    assert out.vectors[:, 0].tolist() == [float(i % 5 + 1) for i in range(30)]
    assert out.input_tokens == 30
    assert all(sum(b) <= 8 for b in model.batches)


async def test_a_big_request_is_cut_by_length_and_answered_in_its_own_order() -> None:
    model = SlowModel(delay=0)
    d = make(model, max_batch_texts=4, max_in_flight=8)
    lengths = [9, 1, 30, 2, 8, 1, 31, 3, 2, 29, 10, 7]  # three lengths, arrival order mixes them
    out = await d.submit(EmbedItem(texts=["x" * n for n in lengths]))
    assert out.vectors[:, 0].tolist() == [float(n) for n in lengths]  # request order kept
    # Each chunk holds texts of about one length: short with short, long with long.
    chunks = [sorted(len(t) for t in model.seen[i : i + 4]) for i in range(0, len(lengths), 4)]
    assert chunks == [[1, 1, 2, 2], [3, 7, 8, 9], [10, 29, 30, 31]]


async def test_one_bad_request_does_not_fail_its_batch_companions() -> None:
    d = make(SlowModel())
    good, bad = await asyncio.gather(
        d.submit(EmbedItem(texts=["ok"])), d.submit(EmbedItem(texts=["bad"])), return_exceptions=True
    )
    assert isinstance(good, EmbedOutput)
    assert isinstance(bad, InvalidArgument)


async def test_a_failed_hop_fails_every_request_in_it() -> None:
    model = SlowModel()
    model.fail_with = Unavailable("replica died")
    d = make(model)
    results = await asyncio.gather(
        *(d.submit(EmbedItem(texts=["a"])) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    model.fail_with = None
    assert (await d.submit(EmbedItem(texts=["ab"]))).vectors[0, 0] == 2.0  # and it keeps serving


async def test_queue_bound_gives_overloaded() -> None:
    d = make(SlowModel(delay=0.05), max_queued_requests=2)
    first = asyncio.ensure_future(d.submit(EmbedItem(texts=["a"])))  # in flight, not queued
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(d.submit(EmbedItem(texts=["a"]))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="queued"):
        await d.submit(EmbedItem(texts=["a"]))
    await asyncio.gather(first, *queued)


async def test_cancelled_and_expired_requests_are_dropped_before_they_are_sent() -> None:
    import time

    model = SlowModel(delay=0.05)
    d = make(model)
    first = asyncio.ensure_future(d.submit(EmbedItem(texts=["a"])))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(d.submit(EmbedItem(texts=["bb"])))
    expired = asyncio.ensure_future(d.submit(EmbedItem(texts=["ccc"]), deadline=time.monotonic() + 0.01))
    kept = asyncio.ensure_future(d.submit(EmbedItem(texts=["dddd"])))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    assert (await kept).vectors[0, 0] == 4.0
    with pytest.raises(EmbedpoolError, match="deadline"):
        await expired
    assert model.seen == ["a", "dddd"]  # neither the cancelled nor the expired one reached the model


async def test_closed_loop_callers_keep_their_batch_size() -> None:
    # 16 callers that each re-send as soon as their answer lands: without regrouping the
    # batches alternate tiny/big; with it they stay near 16.
    model = SlowModel(delay=0.02)
    d = make(model, max_in_flight=1)
    # A wider window than the 5 ms default: on a loaded 2-core machine the callers' 1 ms
    # round trip can take longer than 5 ms, which would measure the scheduler, not regrouping.
    d.regroup_s = 0.05

    async def caller() -> None:
        for _ in range(5):
            await d.submit(EmbedItem(texts=["x"]))
            await asyncio.sleep(0.001)  # the network back to the caller and forward again

    await asyncio.gather(*(caller() for _ in range(16)))
    sizes = [len(b) for b in model.batches]
    assert sum(sizes) == 80
    # Without regrouping: [1, 15, 1, 15, ...]. With it: [1, 15, 15, 15, 15, 15, 4].
    assert len(sizes) <= 7 and sum(s < 8 for s in sizes) <= 2, sizes


async def test_a_lone_caller_back_to_back_is_never_held() -> None:
    import time

    model = SlowModel(delay=0.0)
    d = make(model, max_in_flight=1)
    d.regroup_s = 1.0  # would show up at once if a lone caller were made to wait
    start = time.monotonic()
    for _ in range(5):
        await d.submit(EmbedItem(texts=["x"]))
    assert time.monotonic() - start < 0.5


async def test_side_by_side_chunks_report_the_slowest_chunks_times() -> None:
    timings = iter([(1_000, 50_000), (9_000, 20_000), (4_000, 70_000)])

    async def timed(items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        out: list[EmbedOutput | EmbedpoolError] = []
        for item in items:
            queue_ns, inference_ns = next(timings)
            vec = np.zeros((len(item.texts), 1), dtype=np.float32)
            out.append(EmbedOutput(vec, 1, len(item.texts), 0, queue_ns=queue_ns, inference_ns=inference_ns))
        return out

    d = Dispatcher(timed, max_batch_texts=2, max_in_flight=3, max_queued_requests=10)
    merged = await d.submit(EmbedItem(texts=["a", "b", "c", "d", "e"]))
    # three chunks ran side by side: the caller waited for the slowest, not for their sum
    assert (merged.queue_ns, merged.inference_ns) == (9_000, 70_000)


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 2
    assert estimate_tokens("word " * 100) == 127  # 500 bytes / 4 + 2 (special tokens)
    assert estimate_tokens("火星" * 10) == 17  # 60 UTF-8 bytes: CJK is not under-counted 4x
    assert estimate_tokens("x" * 100_000) == 512  # no model takes more per input


async def test_batches_and_chunks_respect_the_token_budget() -> None:
    model = SlowModel()
    d = make(model, max_batch_tokens=600)
    long = "w" * 1000  # 252 tokens estimated
    out = await d.submit(EmbedItem(texts=[long] * 5 + ["short"]))
    assert out.vectors.shape == (6, 1)
    assert model.batches == [[3], [2], [1]]  # short + two long, two long, one long: <= 600 tokens each
    model.batches.clear()
    await asyncio.gather(*(d.submit(EmbedItem(texts=[long])) for _ in range(4)))
    assert all(sum(b) <= 2 for b in model.batches)  # two 252-token requests per hop at most


async def test_small_requests_go_before_queued_bulk_work() -> None:
    """A query arriving behind a queue of long documents rides in the next batch."""
    model = SlowModel(delay=0.02)
    d = make(model, max_batch_tokens=1024)
    long = "w" * 1000
    bulk = [asyncio.ensure_future(d.submit(EmbedItem(texts=[long] * 4))) for _ in range(5)]
    await asyncio.sleep(0)  # the first bulk request is in flight, four are queued
    query = asyncio.ensure_future(d.submit(EmbedItem(texts=["what is the red planet?"])))
    await query
    assert sum(not f.done() for f in bulk) >= 3  # answered while most bulk work still waits
    await asyncio.gather(*bulk)
    assert model.batches[1][0] == 1  # the query led the first batch formed after it arrived


async def test_bulk_work_that_waited_long_enough_is_not_starved() -> None:
    model = SlowModel(delay=0.01)
    d = Dispatcher(
        model,
        max_batch_texts=64,
        max_in_flight=1,
        max_queued_requests=1000,
        max_batch_tokens=1024,
        bulk_after_s=0.05,
    )
    bulk = asyncio.ensure_future(d.submit(EmbedItem(texts=["w" * 1000] * 3)))

    async def queries() -> None:
        while not bulk.done():  # a steady stream of small requests that never lets up
            await asyncio.gather(*(d.submit(EmbedItem(texts=["q"])) for _ in range(4)))

    await asyncio.wait_for(asyncio.gather(bulk, queries()), timeout=10)


async def test_an_over_long_input_in_a_cut_request_is_named_by_its_request_index() -> None:
    async def refuse_long(items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        out: list[EmbedOutput | EmbedpoolError] = []
        for item in items:
            over = [j for j, t in enumerate(item.texts) if len(t) > 100]
            if over:
                out.append(InvalidArgument(f"input {over[0]} has 300 tokens; the model's limit is 256"))
            else:
                vec = np.zeros((len(item.texts), 1), dtype=np.float32)
                out.append(EmbedOutput(vectors=vec, dimensions=1, input_tokens=0, truncated=0))
        return out

    d = Dispatcher(refuse_long, max_batch_texts=4, max_in_flight=2, max_queued_requests=100)
    texts = ["a" * (i % 7 + 1) for i in range(20)]
    texts[13] = "z" * 1200  # sorted last, so the 4th text of the 5th chunk
    with pytest.raises(InvalidArgument, match=r"^input 13 has 300 tokens"):
        await d.submit(EmbedItem(texts=texts))
