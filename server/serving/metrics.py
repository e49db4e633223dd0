"""Prometheus metrics through Ray Serve's metrics API, tagged per model variant.

Ray exports them on each node's metrics port (`ray start --metrics-export-port`)
with the `ray_` prefix, e.g. `ray_embedpool_batch_size_bucket`.

A call only notes what it saw; `flush()` (every FLUSH_S, from the deployment's own task)
hands it to Ray. Ray's record call costs tens of microseconds of Python (its tags are merged
and checked each time; py-spy: a third of the Router's Python time in Embed), and it ran on
the answer's path. Ray exports every `metrics_report_interval_ms` (seconds), so a reading is
as fresh as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from typing import Any, Protocol

from ray.serve import metrics

_SIZE_BUCKETS: list[float] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
_MS_BUCKETS: list[float] = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
_TOKEN_BUCKETS: list[float] = [8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384]
FLUSH_S = 0.5
log = logging.getLogger("ray.serve")


class Flushable(Protocol):
    def flush(self) -> None: ...


def flush_now(metrics: Flushable) -> None:
    """Hand what the calls noted to Ray; a failure is logged (the notes it held are dropped)."""
    try:
        metrics.flush()
    except Exception:  # the next flush must still run, and a draining deployment still drain
        log.exception("could not record metrics")


async def flush_forever(metrics: Flushable) -> None:
    """The deployment's task that hands what its calls noted to Ray."""
    while True:
        await asyncio.sleep(FLUSH_S)
        flush_now(metrics)


class ReplicaMetrics:
    """Batch size, queue and inference time, tokens per request, for one variant."""

    def __init__(self, model: str, variant: str) -> None:
        tags = {"model": model, "variant": variant}
        # Ray Serve annotates tag_keys as Tuple[str] (exactly one key) though it takes any number:
        # hence the arg-type ignores below.
        keys = ("model", "variant")
        self.batch_size = metrics.Histogram(
            "embedpool_batch_size",
            "Texts per model forward pass.",
            _SIZE_BUCKETS,
            keys,  # type: ignore[arg-type]  # ray: tag_keys typed Tuple[str], takes any length
        )
        self.inference_ms = metrics.Histogram(
            "embedpool_inference_ms",
            "Model time per batch, ms.",
            _MS_BUCKETS,
            keys,  # type: ignore[arg-type]  # ray: tag_keys typed Tuple[str], takes any length
        )
        self.queue_ms = metrics.Histogram(
            "embedpool_queue_ms",
            "Time from arrival to the start of its batch, ms.",
            _MS_BUCKETS,
            keys,  # type: ignore[arg-type]  # ray: tag_keys typed Tuple[str], takes any length
        )
        self.tokens = metrics.Histogram(
            "embedpool_request_tokens",
            "Input tokens per request.",
            _TOKEN_BUCKETS,
            keys,  # type: ignore[arg-type]  # ray: tag_keys typed Tuple[str], takes any length
        )
        self.stream_batches = metrics.Counter(
            "embedpool_stream_batches",
            "Batches run on a stream beside another batch (replica.py), not on every thread.",
            keys,  # type: ignore[arg-type]  # ray: tag_keys typed Tuple[str], takes any length
        )
        for m in (self.batch_size, self.inference_ms, self.queue_ms, self.tokens, self.stream_batches):
            m.set_default_tags(dict(tags))  # Ray adds its own keys to the dict it gets
        self._sizes: Tally[int] = Tally()
        self._batches = 0
        self._streamed = 0
        self._streamed_noted = 0  # stream batches not yet handed to Ray
        self._noted: list[tuple[Any, float]] = []  # (histogram, value) not yet handed to Ray

    def batch(self, texts: int, inference_ns: int, stream: bool = False) -> None:
        self._noted += ((self.batch_size, texts), (self.inference_ms, inference_ns / 1e6))
        self._sizes[texts] += 1
        self._batches += 1
        self._streamed += stream
        self._streamed_noted += stream

    def request(self, tokens: int, queue_ns: int) -> None:
        self._noted += ((self.tokens, tokens), (self.queue_ms, queue_ns / 1e6))

    def flush(self) -> None:
        noted, self._noted = self._noted, []
        streamed, self._streamed_noted = self._streamed_noted, 0
        for histogram, value in noted:
            histogram.observe(value)
        if streamed:
            self.stream_batches.inc(streamed)

    def snapshot(self) -> dict[str, Any]:
        return {"batches": self._batches, "batch_sizes": dict(self._sizes), "stream_batches": self._streamed}


class RouterMetrics:
    """Requests by method, status code and front, per model variant."""

    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "embedpool_requests",
            "Requests by method, model, variant, gRPC status code and front (grpc, ray_proxy, http).",
            ("method", "model", "variant", "code", "front"),  # type: ignore[arg-type]  # ray: Tuple[str]
        )
        self._noted: Tally[tuple[str, str, str, str, str]] = Tally()

    def request(self, method: str, model: str, variant: str, code: str, front: str) -> None:
        self._noted[(method, model, variant, code, front)] += 1

    def flush(self) -> None:
        noted, self._noted = self._noted, Tally()
        for (method, model, variant, code, front), count in noted.items():
            tags = {"method": method, "model": model, "variant": variant, "code": code, "front": front}
            self.requests.inc(count, tags=tags)
