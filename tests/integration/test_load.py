"""Overload: the pool's queues are bounded, and a sustained overload leaves memory flat.

- Every bound is configured as the catalogue says: the Router's per-variant queue
  (`limits.max_queued_requests`) and, on each model replica, Ray's `max_queued_requests`
  and `max_ongoing_requests`; a Ray handle past them is refused with RESOURCE_EXHAUSTED.
- 256 concurrent callers (grpc.aio, raw stubs, one text per call, a deadline on every
  call) load the pool's own port for EMBEDPOOL_LOAD_SECONDS (default 60) in two equal
  phases. Every call is answered OK or RESOURCE_EXHAUSTED (with a `retry-after-ms`
  trailer); nothing else, and nothing hangs. The RSS of every pool process (Router and
  model replicas) after the second phase is at most 10% above its RSS after the first
  (the first phase is the warm-up: allocator pools, torch's per-shape caches).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import psutil
import pytest

from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import Pool
from .pool_processes import pool_processes

pytestmark = pytest.mark.integration

CALLERS = 256
LOAD_SECONDS = float(os.environ.get("EMBEDPOOL_LOAD_SECONDS", "60"))
CALL_DEADLINE_S = 60.0
RSS_GROWTH_BOUND = 0.10
CATALOGUE_QUEUE = 256  # tests/integration/catalogue.yaml: limits.max_queued_requests
MiB = 1024 * 1024


def rss(processes: dict[str, psutil.Process]) -> dict[str, int]:
    return {name: p.memory_info().rss for name, p in processes.items()}


def test_every_queue_is_bounded_as_configured(pool: Pool) -> None:
    from ray.serve.context import _get_global_client

    from embedpool.server.config.catalogue import load_catalogue

    from .conftest import CATALOGUE

    catalogue = load_catalogue(CATALOGUE)
    details = _get_global_client().get_serve_details()
    deployments = details["applications"]["embedpool"]["deployments"]
    for model in catalogue.models:
        for variant in model.variants:
            config = deployments[catalogue.deployment_name(model.name, variant.name)]["deployment_config"]
            assert config["max_queued_requests"] == catalogue.limits.max_queued_requests == CATALOGUE_QUEUE
            assert config["max_ongoing_requests"] == variant.batching.max_ongoing_requests


async def test_a_ray_handle_past_the_replica_queue_is_refused_as_overloaded(pool: Pool) -> None:
    # Ray's own bound, met head-on (the Router keeps at most 2 batches per replica out, so
    # through the Router it is the Router's queue that fills first): 8 ongoing + 256 queued.
    from ray import serve

    from embedpool.server.errors import Overloaded
    from embedpool.server.serving.handle_backend import RayVariantBackend
    from embedpool.server.types import EmbedItem

    backend = RayVariantBackend(
        "recording-test--custom-cpu",
        serve.get_deployment_handle("recording-test--custom-cpu", pool.app_name),
    )
    # A new handle learns the deployment's config (and so its queue bound) shortly after its
    # first call; before that it queues without a bound. The Router's handles are long-lived.
    await backend.embed([EmbedItem(texts=["warm up the handle"])])
    await asyncio.sleep(2)
    # One slow call holds the replica, so the burst meets full slots: 8 ongoing (the slow one
    # among them), then 256 queued at this handle, then refusals, at once.
    slow = asyncio.ensure_future(backend.embed([EmbedItem(texts=["sleep:3"])]))
    await asyncio.sleep(0.5)
    burst = [asyncio.ensure_future(backend.embed([EmbedItem(texts=[f"bound {i}"])])) for i in range(400)]
    await asyncio.sleep(1.5)
    refused = [t for t in burst if t.done() and isinstance(t.exception(), Overloaded)]
    answered = [t for t in burst if t.done() and t.exception() is None]
    waiting = [t for t in burst if not t.done()]
    print(
        f"\nRay handle, 400 concurrent calls on a busy replica: {len(waiting)} ongoing or queued, "
        f"{len(refused)} refused (Overloaded), {len(answered)} answered"
    )
    for t in waiting:  # queued calls are dropped, never run
        t.cancel()
    await asyncio.gather(*burst, return_exceptions=True)
    assert isinstance(await slow, list)
    # What the pool promises: past the queue a call is refused as Overloaded with the pool's
    # message (a retryable status), at once, and no call fails any other way. How many Ray lets
    # wait is its own approximate per-handle count (289 and 339 seen for 8 ongoing + 256
    # queued, more on a loaded machine): not asserted; that the queue is bounded is.
    assert len(refused) + len(waiting) + len(answered) == 400
    assert refused, "400 calls at once on a held replica: none refused, the queue is not bounded"
    assert all("queue limit" in t.exception().message for t in refused)  # type: ignore[union-attr]


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    missing_hint: int = 0
    other: list[str] = field(default_factory=list)


async def caller(stub: pb_grpc.EmbeddingServiceStub, n: int, end: float, tally: Tally) -> None:
    i = 0
    while time.monotonic() < end:
        i += 1
        started = time.monotonic()
        try:
            resp = await stub.Embed(
                pb.EmbedRequest(inputs=[f"caller {n} says hello, call {i}"]), timeout=CALL_DEADLINE_S
            )
            assert len(resp.embeddings) == 1
            tally.codes["OK"] += 1
            tally.latencies.append(time.monotonic() - started)
        except grpc.aio.AioRpcError as err:
            tally.codes[err.code().name] += 1
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                tally.other.append(f"{err.code().name}: {err.details()}")
                continue
            hint = dict(err.trailing_metadata() or ()).get("retry-after-ms")
            if hint is None:
                tally.missing_hint += 1
            await asyncio.sleep(float(hint or 100) / 1000)  # back off as the pool asks


async def phase(stubs: list[pb_grpc.EmbeddingServiceStub], seconds: float) -> Tally:
    tally = Tally()
    end = time.monotonic() + seconds
    await asyncio.gather(*(caller(stubs[n % len(stubs)], n, end, tally) for n in range(CALLERS)))
    return tally


def report(name: str, seconds: float, tally: Tally) -> str:
    lat = sorted(tally.latencies) or [0.0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return (
        f"{name}: {sum(tally.codes.values()) / seconds:.0f} calls/s, codes {dict(tally.codes)}, "
        f"OK latency p50 {statistics.median(lat) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms "
        f"max {lat[-1] * 1000:.0f} ms"
    )


async def test_256_callers_get_ok_or_resource_exhausted_and_memory_stays_flat(pool: Pool) -> None:
    processes = pool_processes()
    assert "Router" in processes and "all-minilm-l6-v2--torch-cpu" in processes, list(processes)
    # Several connections, as many clients would have (one HTTP/2 connection caps streams).
    channels = [
        grpc.aio.insecure_channel(pool.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(8)
    ]
    stubs = [pb_grpc.EmbeddingServiceStub(ch) for ch in channels]
    half = LOAD_SECONDS / 2
    try:
        first = await phase(stubs, half)
        await asyncio.sleep(2)  # let in-flight work drain before measuring
        after_first = rss(processes)
        second = await phase(stubs, half)
        await asyncio.sleep(2)
        after_second = rss(processes)
    finally:
        for ch in channels:
            await ch.close()

    print(f"\n{CALLERS} callers, {LOAD_SECONDS:g} s in two phases")
    print(report("phase 1 (warm-up)", half, first))
    print(report("phase 2", half, second))
    print(f"{'process':32s} {'RSS after 1':>12s} {'RSS after 2':>12s} {'growth':>8s}")
    for name in sorted(processes):
        a, b = after_first[name], after_second[name]
        print(f"{name:32s} {a / MiB:10.1f}Mi {b / MiB:10.1f}Mi {100 * (b - a) / a:+7.1f}%")

    for tally in (first, second):
        assert set(tally.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, tally.other[:5]
        assert tally.missing_hint == 0
        assert tally.codes["OK"] > 0
    for name in processes:
        assert after_second[name] <= after_first[name] * (1 + RSS_GROWTH_BOUND), (
            name,
            after_first[name] / MiB,
            after_second[name] / MiB,
        )
    # Still serving, and nothing left behind in the Router's queues.
    async with grpc.aio.insecure_channel(pool.target) as ch:
        resp = await pb_grpc.EmbeddingServiceStub(ch).Embed(pb.EmbedRequest(inputs=["after"]), timeout=60)
        assert len(resp.embeddings) == 1
