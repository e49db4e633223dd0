"""encode() of ONNX Runtime / OpenVINO models with torch on every core (the library's default and
the bench's ceiling) and on one thread (what the pool's replicas use, model/threads.py).

There torch runs only the modules after the Transformer (Pooling, Normalize), but its OpenMP
threads stay spinning on the cores after each call while the runtime's own threads start the
next forward. This prints texts/s at batch 32 and the one-text p50 for each setting, interleaved
rounds, medians (min..max): the ceiling a careful in-process user could reach beside the default.

    .venv/bin/python scripts/bench_torch_threads.py [--backends openvino-bf16,onnx] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from embedpool.bench.load import cores, load_model, make_batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="openvino-bf16,onnx")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    batches = make_batches(32, seed=0, min_words=8, max_words=48)[:30]
    singles = [batch[0] for batch in batches]
    every = cores()
    results: dict[str, list[float]] = {}
    for backend in args.backends.split(","):
        model = load_model(None, every, backend)
        model.encode(batches[0], batch_size=32)
        for _ in range(args.rounds):
            for threads in (every, 1):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                for batch in batches:
                    model.encode(batch, batch_size=32)
                rate = 32 * len(batches) / (time.perf_counter() - start)
                results.setdefault(f"{backend} torch {threads} thread(s): batch 32 texts/s", []).append(rate)
                times = []
                for text in singles:
                    time.sleep(0.003)  # a pause before each call, as a served call has
                    begin = time.perf_counter()
                    model.encode([text])
                    times.append((time.perf_counter() - begin) * 1000)
                results.setdefault(f"{backend} torch {threads} thread(s): one text p50 ms", []).append(
                    statistics.median(times)
                )
        torch.set_num_threads(every)
    for name, values in results.items():
        print(f"{name:55s} {statistics.median(values):7.2f} ({min(values):.2f}..{max(values):.2f})")


if __name__ == "__main__":
    main()
