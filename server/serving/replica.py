"""One Ray Serve deployment per model variant: loads the model, batches, encodes.

Short batches run the model on the replica's event loop (a worker thread here
loses 5-10 ms per forward waiting for the GIL); long ones, and token counting,
on one encode thread so the loop still answers health checks. Batches arrive
through Serve's handle and, faster, through the replica's direct channel
(direct/receiver.py); both meet in the same @serve.batch queue, except a direct batch
that finds the replica idle and no other batch read, which goes straight to the model.

Where the model has streams (OpenVINO on a CPU: runner.stream_slots), a replica under load
runs two batches at once, each on a stream of its share of the threads: a batch the Router
sent beside another of its batches (wire.BESIDE), or one that finds a batch running, goes
to a stream thread. A batch alone (one caller, a bulk call's chunks one by one) still gets
every thread: on one stream it would run at half speed (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from embedpool.server import tracing
from embedpool.server.direct.receiver import DirectServer
from embedpool.server.errors import EmbedpoolError
from embedpool.server.serving import metrics
from embedpool.server.serving import registry as replica_registry
from embedpool.server.serving.autoscale import DIRECT_ONGOING
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription

log = logging.getLogger("ray.serve")
# Batches up to this many characters (~4k tokens: well under a second of CPU forward) run
# on the event loop; longer ones on the encode thread, so health checks still get answers.
INLINE_MAX_CHARS = 16384


def _texts_in(calls: list[list[EmbedItem]]) -> int:
    return sum(len(item.texts) for call in calls for item in call)


@serve.deployment(max_ongoing_requests=8)
class ModelReplica:
    async def __init__(  # type: ignore[misc]  # Ray Serve awaits an async constructor
        self,
        model_cfg: dict[str, Any],
        variant_cfg: dict[str, Any],
        cache_dir: str | None,
        direct: bool = True,
        telemetry: dict[str, Any] | None = None,
    ) -> None:
        from embedpool.server.config.catalogue import ModelConfig, TelemetryConfig, VariantConfig
        from embedpool.server.model import threads as thread_settings
        from embedpool.server.model.runner import load_runner

        model = ModelConfig.model_validate(model_cfg)
        variant = VariantConfig.model_validate(variant_cfg)
        traces = TelemetryConfig.model_validate(telemetry or {})
        tracing.configure(
            "replica",
            traces.otlp_endpoint,
            traces.sample_ratio,
            {"embedpool.model": model.name, "embedpool.variant": variant.name or ""},
        )
        # Ray pins OMP/torch to the actor's num_cpus (1 thread when fractional);
        # the variant's budget is decided here on purpose (model/threads.py).
        threads = variant.effective_threads
        thread_settings.for_process(threads)
        self.runner = load_runner(model, variant, cache_dir, threads)
        self.runner.set_threads(threads)
        self.runner.warmup()
        # OpenMP's thread count is per thread, and Ray started this process with
        # OMP_NUM_THREADS=1: the encode thread must set its own, or it runs 1-threaded.
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="encode",
            initializer=self.runner.set_threads,
            initargs=(threads,),
        )
        # Stream threads, one per stream; each keeps its own infer request (model/openvino_forward.py).
        self._streams: ThreadPoolExecutor | None = None
        if self.runner.stream_slots():
            self._streams = ThreadPoolExecutor(
                max_workers=self.runner.stream_slots(),
                thread_name_prefix="stream",
                initializer=self.runner.enter_stream_thread,
            )
        # @serve.batch's wrapper has these setters; Ray types the decorated method as a plain Callable.
        self.embed.set_max_batch_size(variant.batching.max_batch_size)  # type: ignore[attr-defined]
        self.embed.set_batch_wait_timeout_s(variant.batching.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self._metrics = metrics.ReplicaMetrics(model.name, variant.name or "")
        self._metrics_task = asyncio.get_running_loop().create_task(metrics.flush_forever(self._metrics))
        self._running = 0  # batches between the start of embed and their results
        self.direct = DirectServer(self._embed_direct)
        self._heartbeat: asyncio.Task[None] | None = None
        if direct:
            import ray

            ctx = serve.get_replica_context()
            self._key = (ctx.app_name, ctx.deployment, ctx.replica_id.unique_id)
            await self.direct.start(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]  # unannotated in ray
            await asyncio.to_thread(self._publish)
            self._heartbeat = asyncio.get_running_loop().create_task(self._publish_forever())

    def _publish(self) -> None:
        replica_registry.publish(*self._key, self.direct.address, self.direct.token)

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(replica_registry.HEARTBEAT_S)
            try:
                await asyncio.to_thread(self._publish)
            except Exception:  # the GCS may be restarting: keep serving, try again next beat
                log.exception("could not publish the direct channel's address")

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Batches held on the direct channel (mean since the last report), which Serve's own
        request count does not see."""
        return {DIRECT_ONGOING: self.direct.mean_ongoing()}

    async def stats(self) -> dict[str, Any]:
        """Batch sizes (in texts) this replica ran, for tests and `embedpool bench`."""
        return self._metrics.snapshot()

    async def describe(self) -> VariantDescription:
        return self.runner.description

    async def ping(self) -> None:
        return None

    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.runner.count_tokens, texts, input_type, prompt, prompt_name
        )

    async def _embed_direct(
        self, items: list[EmbedItem], beside: bool = False
    ) -> list[EmbedOutput | EmbedpoolError]:
        """A batch from the direct channel: on a stream when it runs beside another (above);
        alone on an idle replica, straight to the model (there is nothing to merge it with, and
        @serve.batch's queue cost a one-text call ~0.3 ms of its ~0.5 ms from the Router to the
        forward pass); else into the queue, to meet the others (batches read together are all
        counted before the first gets here)."""
        if self._streams is not None and (beside or self._running > 0):
            return (await self._embed_calls([items], stream=True))[0]
        if self._running == 0 and self.direct.ongoing <= 1:
            return (await self._embed_calls([items]))[0]
        result: list[EmbedOutput | EmbedpoolError] = await self.embed(items)
        return result

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=_texts_in)
    async def embed(self, calls: list[list[EmbedItem]]) -> list[list[EmbedOutput | EmbedpoolError]]:
        """Each call is a router's batch; all of them go through the model in one pass."""
        return await self._embed_calls(calls)

    async def _embed_calls(
        self, calls: list[list[EmbedItem]], stream: bool = False
    ) -> list[list[EmbedOutput | EmbedpoolError]]:
        self._running += 1
        try:
            return await self._embed_merged(calls, stream)
        finally:
            self._running -= 1

    async def _embed_merged(
        self, calls: list[list[EmbedItem]], stream: bool = False
    ) -> list[list[EmbedOutput | EmbedpoolError]]:
        flat = [item for call in calls for item in call]
        start = time.monotonic_ns()
        start_wall = time.time_ns()
        # Each Router batch's hop span (one per call merged here): the first is the parent.
        hops = list(dict.fromkeys(call[0].trace for call in calls if call and call[0].trace))
        parents = [ctx for ctx in map(tracing.span_context_of, hops) if ctx is not None]
        with tracing.span(
            "embedpool replica",
            parent=parents[0] if parents else None,
            links=parents,
            kind=tracing.SERVER,
            attributes={
                "embedpool.batch.texts": _texts_in(calls),
                "embedpool.batch.calls": len(calls),
                "embedpool.batch.stream": stream,
            },
        ):
            results = await self._run(flat, stream)
        inference_ns = time.monotonic_ns() - start
        self._metrics.batch(_texts_in(calls), inference_ns, stream)
        for item, result in zip(flat, results, strict=True):
            if isinstance(result, EmbedOutput):
                # arrived_ns is the router's wall clock: across nodes it is as good as NTP.
                result.queue_ns = max(0, start_wall - item.arrived_ns) if item.arrived_ns else 0
                result.inference_ns = inference_ns
                self._metrics.request(result.input_tokens, result.queue_ns)
        out: list[list[EmbedOutput | EmbedpoolError]] = []
        i = 0
        for call in calls:
            out.append(results[i : i + len(call)])
            i += len(call)
        return out

    async def _run(self, flat: list[EmbedItem], stream: bool = False) -> list[EmbedOutput | EmbedpoolError]:
        loop = asyncio.get_running_loop()
        # The model's thread runs in this call's context, so the model's spans join the trace.
        run = contextvars.copy_context().run
        if stream and self._streams is not None:
            streamed: list[EmbedOutput | EmbedpoolError] = await loop.run_in_executor(
                self._streams, run, self.runner.embed_batch_on_stream, flat
            )
            return streamed
        results = None
        if sum(len(text) for item in flat for text in item.texts) <= INLINE_MAX_CHARS:
            # A short batch runs right here on the event loop: on the encode thread each torch
            # op waits for the GIL behind Ray's and gRPC's threads (+5-10 ms on a one-text
            # forward, BENCHMARKS.md), and the loop stalls for one short forward at most.
            results = self.runner.try_embed_batch(flat)  # None: count_tokens holds the model
        if results is None:
            results = await loop.run_in_executor(self._executor, run, self.runner.embed_batch, flat)
        return results

    async def __del__(self) -> None:
        """Drain: Routers stop choosing this replica, direct batches in flight finish."""
        heartbeat = getattr(self, "_heartbeat", None)  # None too when __init__ failed early
        if heartbeat is not None:
            heartbeat.cancel()
            try:
                await asyncio.to_thread(replica_registry.unpublish, *self._key)
            except Exception:
                log.exception("could not unpublish the direct channel")
            await self.direct.stop(grace=15)
        if hasattr(self, "_metrics_task"):
            self._metrics_task.cancel()
            metrics.flush_now(self._metrics)
        if hasattr(self, "_executor"):
            self._executor.shutdown(wait=False, cancel_futures=True)
        streams = getattr(self, "_streams", None)
        if streams is not None:
            streams.shutdown(wait=False, cancel_futures=True)
