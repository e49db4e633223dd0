"""The GPU part of issue #20, as one prepared script for a lent device (no Ray, no embedpool imports).

On the device (torch + sentence-transformers are there; the weights are not):
  1. here:   .venv/bin/python scripts/gpu_check.py --bundle .gpu/model
             (the bundled all-MiniLM-L6-v2 with float16 weights: 44 MiB, under the device's 64 MiB carry;
             .gpu/ is git-ignored, so it travels only when carried)
  2. there:  python3 scripts/gpu_check.py --model .gpu/model --out $OUT/gpu.json   (carry: [".gpu"])

It prints, for float32, float16 and bfloat16 on cuda: texts/s at batch 32 and on 256 texts in
length-sorted batches of 32 vs arrival-order batches of 32, the one-text latency, and the min /
mean cosine to CPU float32 of the same weights on held-out texts (target >= 0.999); and the
CPU's torch float32 figures on all its cores beside them. Float16 weights upcast to float32 are
the reference, so the cosine measures compute precision alone. On a machine without CUDA it runs
the CPU part only (a dry run of the script itself). The per-CPU backend choice and int8 on the
device's 16 cores need OpenVINO and optimum, which its image lacks: carry their wheels for that
(the device README says how) and run scripts/bench_backends.py there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_WORD_LIST = (
    "river mountain ledger invoice cluster kernel protein harvest violin orbit lantern contract glacier "
    "pixel sermon tariff enzyme ballot compiler meadow turbine senate novel vaccine archive bridge quarry "
    "the a of to and in for with on by from quickly slowly never often measured reviewed shipped old new"
)
_WORDS = _WORD_LIST.split()


def texts(n: int, seed: int, low: int = 8, high: int = 48) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high))) + "." for _ in range(n)]


def bundle(target: str) -> None:
    from sentence_transformers import SentenceTransformer

    from embedpool.bench.load import default_model_path

    model = SentenceTransformer(default_model_path(), device="cpu")
    model.half()
    model.save_pretrained(target, safe_serialization=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(target) for f in fs)
    print(f"wrote {target}: {size / 2**20:.1f} MiB")


def timed(fn: Any, rounds: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", metavar="DIR", help="write the float16 model bundle here and stop")
    parser.add_argument("--model", default=".gpu/model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.bundle:
        bundle(args.bundle)
        return

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    held_out = texts(64, seed=4242, low=4, high=60)
    batch = texts(32, seed=7)
    bulk = texts(256, seed=8, low=4, high=120)
    single = texts(5, seed=9)
    cpu = SentenceTransformer(args.model, device="cpu", model_kwargs={"dtype": torch.float32})
    reference = cpu.encode(held_out, normalize_embeddings=True, batch_size=64)
    report: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    runs = [("cpu", "float32", cpu)]
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
        for dtype in ("float32", "float16", "bfloat16"):
            model = SentenceTransformer(
                args.model, device="cuda", model_kwargs={"dtype": getattr(torch, dtype)}
            )
            runs.append(("cuda", dtype, model))
    print(json.dumps({k: v for k, v in report.items()}))
    print(
        f"{'DEVICE':6} {'DTYPE':9} {'@32 t/s':>10} {'256 sorted':>11} {'256 arrival':>12} "
        f"{'1 text ms':>10} {'cos min':>8} {'cos mean':>9}"
    )
    rows = []
    for device, dtype, model in runs:

        def sync(on: str = device) -> None:
            if on == "cuda":
                torch.cuda.synchronize()

        def run(items: list[str], size: int = 32, m: Any = model) -> None:
            m.encode(items, batch_size=size)
            sync()

        def arrival(m: Any = model) -> None:  # batches of 32 in arrival order: each pads to its longest
            for i in range(0, len(bulk), 32):
                m.encode(bulk[i : i + 32], batch_size=32)
            sync()

        b32 = len(batch) / statistics.median(timed(lambda: run(batch), args.rounds))
        sorted_rate = len(bulk) / statistics.median(timed(lambda: run(bulk), args.rounds))
        arrival_rate = len(bulk) / statistics.median(timed(arrival, args.rounds))
        one = 1000 * statistics.median(t for s in single for t in timed(lambda s=s: run([s]), 3))
        vectors = model.encode(held_out, normalize_embeddings=True, batch_size=64)
        cos = np.sum(np.asarray(vectors, dtype=np.float64) * reference, axis=1)
        row = {
            "device": device,
            "dtype": dtype,
            "texts_per_s_batch32": round(b32, 1),
            "texts_per_s_256_sorted": round(sorted_rate, 1),
            "texts_per_s_256_arrival": round(arrival_rate, 1),
            "one_text_ms": round(one, 2),
            "cos_min": round(float(cos.min()), 5),
            "cos_mean": round(float(cos.mean()), 5),
        }
        rows.append(row)
        print(
            f"{device:6} {dtype:9} {b32:10.1f} {sorted_rate:11.1f} {arrival_rate:12.1f} {one:10.2f} "
            f"{row['cos_min']:8.5f} {row['cos_mean']:9.5f}"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({**report, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
