"""Metrics are noted by each call and handed to Ray by the deployment's flush task, off the
answer's path. Ray's metric classes are replaced by recorders (no Ray here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from embedpool.server.serving import metrics


class _Recorder:
    def __init__(self, name: str, *args: Any) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []
        self.fail = False

    def set_default_tags(self, tags: dict[str, str]) -> None:
        pass

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.calls.append((value, tuple(sorted((tags or {}).items()))))

    def observe(self, value: float) -> None:
        if self.fail:
            raise RuntimeError("the metrics agent went away")
        self.calls.append((value,))


@pytest.fixture(autouse=True)
def _recorders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics.metrics, "Counter", _Recorder)
    monkeypatch.setattr(metrics.metrics, "Histogram", _Recorder)


def test_router_counts_are_summed_per_tag_set_and_reach_ray_only_when_flushed() -> None:
    router = metrics.RouterMetrics()
    for _ in range(3):
        router.request("Embed", "m", "cpu", "OK", "grpc")
    router.request("Embed", "m", "cpu", "INVALID_ARGUMENT", "http")
    counter: Any = router.requests
    assert counter.calls == []  # nothing on the call's path
    router.flush()
    tags = {"method": "Embed", "model": "m", "variant": "cpu"}
    ok = tuple(sorted({**tags, "code": "OK", "front": "grpc"}.items()))
    bad = tuple(sorted({**tags, "code": "INVALID_ARGUMENT", "front": "http"}.items()))
    assert sorted(counter.calls) == sorted([(3, ok), (1, bad)])
    router.flush()
    assert len(counter.calls) == 2  # each call counted once


def test_replica_observations_are_kept_in_order_until_flushed() -> None:
    replica = metrics.ReplicaMetrics("m", "cpu")
    replica.batch(32, 5_000_000)
    replica.request(17, 250_000)
    replica.batch(4, 1_000_000, stream=True)
    replica.batch(2, 1_000_000, stream=True)
    # what `stats` reads: at once
    assert replica.snapshot() == {"batches": 3, "batch_sizes": {32: 1, 4: 1, 2: 1}, "stream_batches": 2}
    histograms: list[Any] = [replica.batch_size, replica.inference_ms, replica.tokens, replica.queue_ms]
    streamed: Any = replica.stream_batches
    assert all(h.calls == [] for h in [*histograms, streamed])
    replica.flush()
    assert [h.calls for h in histograms] == [
        [(32,), (4,), (2,)],
        [(5.0,), (1.0,), (1.0,)],
        [(17,)],
        [(0.25,)],
    ]
    assert streamed.calls == [(2, ())]
    replica.flush()
    assert streamed.calls == [(2, ())]  # counted once


async def test_the_flush_task_keeps_going_after_a_failed_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "FLUSH_S", 0.01)
    replica = metrics.ReplicaMetrics("m", "cpu")
    histogram: Any = replica.batch_size
    histogram.fail = True
    replica.batch(1, 1)
    task = asyncio.ensure_future(metrics.flush_forever(replica))
    await asyncio.sleep(0.05)
    histogram.fail = False
    replica.batch(2, 1)
    await asyncio.sleep(0.05)
    task.cancel()
    assert histogram.calls == [(2,)]  # the failed flush dropped its notes; the next one ran
