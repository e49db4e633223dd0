"""One Ray Serve deployment per model variant: loads the model, batches, encodes.

Model work runs on one dedicated thread so the replica's event loop stays free
to accept and batch the next requests while the current batch computes.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from embedpool.server import metrics
from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription


def _texts_in(calls: list[list[EmbedItem]]) -> int:
    return sum(len(item.texts) for call in calls for item in call)


@serve.deployment(max_ongoing_requests=8)
class ModelReplica:
    def __init__(self, model_cfg: dict[str, Any], variant_cfg: dict[str, Any], cache_dir: str | None) -> None:
        from embedpool.server.catalogue import ModelConfig, VariantConfig
        from embedpool.server.model_runner import load_runner

        model = ModelConfig.model_validate(model_cfg)
        variant = VariantConfig.model_validate(variant_cfg)
        # Ray pins OMP/torch to the actor's num_cpus (1 thread when fractional);
        # the variant's budget is decided here on purpose.
        threads = variant.effective_threads
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.runner = load_runner(model, variant, cache_dir, threads)
        self.runner.set_threads(threads)
        self.runner.warmup()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self.embed.set_max_batch_size(variant.batching.max_batch_size)
        self.embed.set_batch_wait_timeout_s(variant.batching.batch_wait_timeout_s)
        self._metrics = metrics.ReplicaMetrics(model.name, variant.name)

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

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=_texts_in)
    async def embed(self, calls: list[list[EmbedItem]]) -> list[list[EmbedOutput | EmbedpoolError]]:
        """Each call is a router's batch; all of them go through the model in one pass."""
        flat = [item for call in calls for item in call]
        start = time.monotonic_ns()
        start_wall = time.time_ns()
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self.runner.embed_batch, flat)
        inference_ns = time.monotonic_ns() - start
        self._metrics.batch(_texts_in(calls), inference_ns)
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

    def __del__(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
