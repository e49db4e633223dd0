"""`embedpool bench`: closed-loop load against a running pool, and the in-process ceiling.

    embedpool bench --concurrency 8 --texts-per-call 1 --duration 20
    embedpool bench --concurrency 1,4,16,32 --ceiling --plot concurrency.png --json
    embedpool bench --in-process --texts-per-call 32 --requests 200

Each of N callers sends its next Embed call (K generated texts, raw bytes vectors) as soon
as the previous one returns, over grpc.aio: one shared channel, or one channel (TCP
connection) per --callers-per-channel callers. A run stops at --duration seconds or
--requests calls, whichever comes first, after --warmup seconds of the same load. The
report gives throughput (texts/s, calls/s), latency p50/p90/p99 of successful calls, and
errors by gRPC code; --json prints one object, or a list for a concurrency sweep.

--in-process measures the ceiling instead: the same model with sentence-transformers in
this process (all cores), encode() on the same texts at batch size K (--ceiling-batch
offered: K x concurrency, what perfect server-side batching could form). --ceiling runs
the ceiling first, then the served load, and reports served/ceiling ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
from pathlib import Path
from typing import Any

from embedpool import ClientOptions
from embedpool.bench import load as bench_load
from embedpool.bench import report as bench_report
from embedpool.bench.load import BenchError, LoadSettings

DEFAULT_DURATION_S = 10.0
DEFAULT_LENGTH = (8, 48)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _concurrency(text: str) -> list[int]:
    values = [_positive_int(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give one or more callers counts, e.g. 8 or 1,4,16,32")
    return values


def _protocols(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names or any(p not in ("grpc", "http") for p in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected grpc, http or grpc,http, not {text!r}")
    return names


def _http_url(args: argparse.Namespace) -> str:
    if args.http_url:
        return str(args.http_url).rstrip("/")
    host = str(args.target).rsplit(":", 1)[0] if ":" in str(args.target) else str(args.target)
    return f"http://{host}:8080"


def _length(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    lo = _positive_int(low)
    hi = _positive_int(high) if sep else lo
    if hi < lo:
        raise argparse.ArgumentTypeError(f"MIN:MAX with MIN <= MAX, not {text!r}")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if "--target" not in parser._option_string_actions:
        # The connection options also after `bench`, as the client's subcommands take them
        # (--timeout is the deadline of each call).
        from embedpool.cli import add_connection_options

        add_connection_options(parser, suppress=True)
    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency",
        type=_concurrency,
        default=[1],
        metavar="N[,N...]",
        help="closed-loop callers; a comma list (1,4,16,32) sweeps (default 1)",
    )
    load.add_argument(
        "--texts-per-call", type=_positive_int, default=1, metavar="K", help="texts per Embed call"
    )
    load.add_argument(
        "--length",
        type=_length,
        default=DEFAULT_LENGTH,
        metavar="MIN:MAX",
        help="words per generated text, uniformly drawn (default {}:{})".format(*DEFAULT_LENGTH),
    )
    load.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="S",
        help=f"seconds per run (default {DEFAULT_DURATION_S:g}, or unbounded when --requests is given)",
    )
    load.add_argument("--requests", type=_positive_int, default=None, metavar="N", help="calls per run")
    load.add_argument(
        "--warmup",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="seconds of unrecorded load before each run, at most --requests calls (default 1)",
    )
    load.add_argument("--seed", type=int, default=0, help="seed of the generated texts (default 0)")
    load.add_argument("--model", default="", help="model name (default: the pool's default)")
    load.add_argument("--variant", default="", help="variant name (default: the model's default)")
    load.add_argument(
        "--protocol",
        type=_protocols,
        default=["grpc"],
        metavar="P[,P]",
        help="grpc, http (the OpenAI-compatible front) or grpc,http: both in the same run, one after the "
        "other at each concurrency, with HTTP's added p50 and throughput ratio (default grpc)",
    )
    load.add_argument(
        "--http-url",
        default="",
        metavar="URL",
        help="the pool's HTTP front (default: http://<target host>:8080)",
    )
    load.add_argument(
        "--callers-per-channel",
        type=int,
        default=0,
        metavar="N",
        help="gRPC channels (TCP connections): one per N callers; 0 (default) shares one channel, "
        "measured faster than one per 8 callers on a 2-core machine",
    )
    ceiling = parser.add_argument_group("ceiling")
    mode = ceiling.add_mutually_exclusive_group()
    mode.add_argument(
        "--in-process",
        action="store_true",
        help="measure only the ceiling: the model's encode() in this process, no pool",
    )
    mode.add_argument("--ceiling", action="store_true", help="the ceiling first, then the pool; print ratios")
    ceiling.add_argument(
        "--ceiling-batch",
        choices=("call", "offered"),
        default="call",
        help="ceiling batch size: texts per call (default), or texts per call x concurrency",
    )
    ceiling.add_argument(
        "--ceiling-model",
        default=None,
        metavar="PATH",
        help="model directory or hub id for the ceiling (default: the bundled all-MiniLM-L6-v2)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        metavar="URL",
        help="Ray metrics endpoint (host:port of --metrics-export-port), scraped before and after "
        "each run for the pool's batch sizes; repeat for each node",
    )
    out.add_argument("--json", action="store_true", help="print JSON (a list for a sweep)")
    out.add_argument("--plot", metavar="FILE.png", help="plot throughput and p99 latency against concurrency")


def _bounds(args: argparse.Namespace) -> tuple[float | None, int | None]:
    if args.duration is None and args.requests is None:
        return DEFAULT_DURATION_S, None
    return args.duration, args.requests


def _common_settings(args: argparse.Namespace) -> dict[str, Any]:
    duration, requests = _bounds(args)
    return {
        "texts_per_call": args.texts_per_call,
        "length": list(args.length),
        "duration_s": duration,
        "requests": requests,
        "warmup_s": args.warmup,
        "seed": args.seed,
    }


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _batches(args: argparse.Namespace, batch_size: int) -> list[list[str]]:
    lo, hi = args.length
    return bench_load.make_batches(batch_size, seed=args.seed, min_words=lo, max_words=hi)


# -- ceiling -------------------------------------------------------------------------------------


def _ceilings(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """The in-process ceiling per batch size it needs (one for --ceiling-batch call)."""
    sizes: list[int] = []
    for concurrency in args.concurrency:
        size = args.texts_per_call * (concurrency if args.ceiling_batch == "offered" else 1)
        if size not in sizes:
            sizes.append(size)
    duration, requests = _bounds(args)
    threads = bench_load.cores()
    _say(f"loading the in-process model ({threads} torch threads)")
    model = bench_load.load_model(args.ceiling_model, threads)
    name = Path(args.ceiling_model).name if args.ceiling_model else "all-MiniLM-L6-v2 (bundled)"
    out: dict[int, dict[str, Any]] = {}
    batch1: float | None = None
    try:
        for size in sorted(sizes):
            _say(f"in-process ceiling: encode() batch {size}")
            batches = _batches(args, size)
            sample = bench_load.run_in_process(
                model, batches, duration_s=duration, requests=requests, warmup_s=args.warmup
            )
            sample.model = name
            settings = {
                "target": "in-process",
                "concurrency": 1,
                "batch_size": size,
                "threads": threads,
                **_common_settings(args),
                "model": name,
                "variant": "",
            }
            result = bench_report.summarize(sample, "in-process", settings)
            if size == 1:
                batch1 = result["latency_ms"]["p50"]
            elif batch1 is None:
                batch1 = round(bench_load.batch1_p50_ms(model, [t for b in batches for t in b]), 3)
            out[size] = result
        for result in out.values():
            result["batch1_p50_ms"] = batch1
    finally:
        del model
        gc.collect()
    return out


def _ceiling_for(
    args: argparse.Namespace, ceilings: dict[int, dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    size = args.texts_per_call * (concurrency if args.ceiling_batch == "offered" else 1)
    ceiling = dict(ceilings[size])
    ceiling["settings"] = {**ceiling["settings"], "ceiling_for_concurrency": concurrency}
    return ceiling


# -- served --------------------------------------------------------------------------------------


def _scrape(args: argparse.Namespace) -> bench_report.Samples | str:
    try:
        return bench_report.scrape(args.metrics_url)
    except (OSError, ValueError) as err:
        return f"cannot scrape {', '.join(args.metrics_url)}: {err}"


async def _served(args: argparse.Namespace, ceilings: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    options = ClientOptions(
        target=args.target,
        token=args.token,
        tls=args.tls,
        root_certificates=args.root_certificates,
        timeout=args.timeout,
    )
    duration, requests = _bounds(args)
    batches = _batches(args, args.texts_per_call)
    results = []
    for concurrency in args.concurrency:
        settings = LoadSettings(
            target=args.target,
            options=options,
            concurrency=concurrency,
            batches=batches,
            duration_s=duration,
            requests=requests,
            warmup_s=args.warmup,
            model=args.model,
            variant=args.variant,
            callers_per_channel=args.callers_per_channel,
            timeout_s=args.timeout,
        )
        channels = 1 if args.callers_per_channel <= 0 else math.ceil(concurrency / args.callers_per_channel)
        _say(
            f"served: {concurrency} caller(s) on {channels} channel(s), {args.texts_per_call} text(s)/call, "
            f"{duration if duration is not None else '-'}s / {requests or '-'} calls"
        )
        by_protocol: dict[str, dict[str, Any]] = {}
        for protocol in args.protocol:
            if len(args.protocol) > 1:
                _say(f"  over {protocol}")
            by_protocol[protocol] = await _served_run(
                args, settings, protocol, concurrency, channels, ceilings
            )
            results.append(by_protocol[protocol])
        if len(by_protocol) == 2:  # in either order: alternate it between runs to even out drift
            by_protocol["http"]["vs_grpc"] = bench_report.versus_grpc(
                by_protocol["http"], by_protocol["grpc"]
            )
    return results


async def _served_run(
    args: argparse.Namespace,
    settings: LoadSettings,
    protocol: str,
    concurrency: int,
    channels: int,
    ceilings: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    before = _scrape(args) if args.metrics_url else None
    if protocol == "http":
        sample = await bench_load.run_served_http(settings, _http_url(args))
    else:
        sample = await bench_load.run_served(settings)
    after = _scrape(args) if args.metrics_url else None
    record = {
        "target": _http_url(args) if protocol == "http" else args.target,
        "protocol": protocol,
        "concurrency": concurrency,
        **_common_settings(args),
        "model": args.model,
        "variant": args.variant,
        "callers_per_channel": args.callers_per_channel,
        "channels": channels,
        "timeout_s": args.timeout,
    }
    result = bench_report.summarize(sample, "served", record)
    if args.metrics_url:
        if isinstance(before, str) or isinstance(after, str):
            result["pool_metrics"] = {"error": before if isinstance(before, str) else after}
        else:
            result["pool_metrics"] = bench_report.pool_metrics(
                before or [], after or [], model=args.model, variant=args.variant
            )
    if ceilings:
        ceiling = _ceiling_for(args, ceilings, concurrency)
        result["ceiling"] = ceiling
        result["ratio"] = bench_report.ratios(result, ceiling)
    return result


def run(args: argparse.Namespace) -> int:
    try:
        ceilings = _ceilings(args) if args.in_process or args.ceiling else {}
        if args.in_process:
            if args.ceiling_batch == "offered":
                results = [_ceiling_for(args, ceilings, c) for c in args.concurrency]
            else:
                results = list(ceilings.values())
        else:
            results = asyncio.run(_served(args, ceilings))
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        sweep = len(results) > 1
        print(json.dumps(results if sweep else results[0], indent=2))
    else:
        print(bench_report.format_report(results))
    if args.plot:
        bench_report.plot(results, args.plot)
        _say(f"plot written to {args.plot}")
    return 0 if all(r["ok_calls"] for r in results) else 1
