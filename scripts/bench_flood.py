"""Short texts while long ones flow: the p50/p99 of one-text calls beside a flood of long calls.

    EMBEDPOOL_TARGET=127.0.0.1:50051 .venv/bin/python scripts/bench_flood.py [--duration 20]

Runs, for --duration seconds each: (1) short calls alone, (2) the same short calls while
--flood callers send --flood-texts texts of --long-words words back to back. Prints the short
calls' p50/p99 in both phases and the flood's texts/s. A pool that batches by text count alone
holds a short call behind whole batches of long texts; the number to watch is (2)'s p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

from embedpool import AsyncEmbeddingClient

WORDS = (
    "the",
    "river",
    "crossed",
    "a",
    "quiet",
    "valley",
    "where",
    "old",
    "mills",
    "turned",
    "under",
    "grey",
)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def short_calls(client: AsyncEmbeddingClient, until: float, out: list[float]) -> None:
    rng = random.Random(1)
    while time.monotonic() < until:
        started = time.perf_counter()
        await client.embed([text(rng, 8)])
        out.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)


async def flood(client: AsyncEmbeddingClient, until: float, n: int, words: int, done: list[int]) -> None:
    rng = random.Random(2)
    while time.monotonic() < until:
        await client.embed([text(rng, words) for _ in range(n)], truncate=True)
        done.append(n)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default=os.environ.get("EMBEDPOOL_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=4, help="long callers")
    parser.add_argument("--flood-texts", type=int, default=64)
    parser.add_argument("--long-words", type=int, default=200)
    args = parser.parse_args()
    async with AsyncEmbeddingClient(target=args.target, timeout=120, max_concurrency=64) as client:
        await client.embed(["warm up"])
        alone: list[float] = []
        await short_calls(client, time.monotonic() + args.duration, alone)
        beside: list[float] = []
        done: list[int] = []
        until = time.monotonic() + args.duration
        started = time.monotonic()
        await asyncio.gather(
            short_calls(client, until, beside),
            *(flood(client, until, args.flood_texts, args.long_words, done) for _ in range(args.flood)),
        )
        elapsed = time.monotonic() - started
    print(f"short alone:        n={len(alone)} p50 {pct(alone, 0.5):.1f} ms  p99 {pct(alone, 0.99):.1f} ms")
    print(
        f"short beside flood: n={len(beside)} p50 {pct(beside, 0.5):.1f} ms  "
        f"p99 {pct(beside, 0.99):.1f} ms  max {1000 * max(beside):.0f} ms"
    )
    print(
        f"flood: {args.flood} callers x {args.flood_texts} texts of {args.long_words} words: "
        f"{sum(done) / elapsed:.1f} texts/s ({statistics.mean(done) if done else 0:.0f} per call)"
    )


if __name__ == "__main__":
    asyncio.run(main())
