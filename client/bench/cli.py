"""`embedpool bench`: closed-loop load against a running pool, and the in-process ceiling.

    embedpool bench --concurrency 8 --texts-per-call 1 --duration 20
    embedpool bench --concurrency 1,4,16,32 --ceiling --plot concurrency.png --json
    embedpool bench --in-process --texts-per-call 32 --requests 200
    embedpool bench --texts-per-call 2048 --duration 30 --ceiling --ceiling-batch whole
    embedpool bench --ceiling --ceiling-backend torch,onnx --rounds 3 --peer-url http://host:7997

Each of N callers sends its next Embed call (K generated texts, raw bytes vectors) as soon
as the previous one returns, over grpc.aio: one shared channel, or one channel (TCP
connection) per --callers-per-channel callers. A run stops at --duration seconds or
--requests calls, whichever comes first, after --warmup seconds of the same load. The
report gives throughput (texts/s, calls/s), latency p50/p90/p99 of successful calls, and
errors by gRPC code; --json prints one object, or a list for a concurrency sweep.

--in-process measures the ceiling instead: the same model with sentence-transformers in
this process (all cores), encode() on the same texts at batch size K (--ceiling-batch
offered: K x concurrency, what perfect server-side batching could form; whole: the call's K
texts in one encode() that the library sorts by length and cuts into batches of 32, the best
it does with a bulk list). --ceiling runs the ceiling first, then the served load, and reports
served/ceiling ratios; --ceiling-backend measures torch, onnx and/or openvino and names the
fastest. --peer-url runs the same load against another OpenAI-style embeddings server after
the pool. --rounds repeats ceiling, pool, peer per load, in that order, and reports medians
with their min..max: on a shared machine one run drifts by tens of percent.
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


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names or any(b not in bench_load.CEILING_BACKENDS for b in names) or len(set(names)) != len(names):
        choices = ", ".join(bench_load.CEILING_BACKENDS)
        raise argparse.ArgumentTypeError(f"one or more of {choices}, comma-separated, not {text!r}")
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
        choices=("call", "offered", "whole"),
        default="call",
        help="ceiling batch: texts per call in one forward pass (default), texts per call x "
        "concurrency, or whole: one encode() of the call's texts at the library's batch size "
        f"({bench_load.LIBRARY_BATCH}, sorted by length), the ceiling of a bulk call",
    )
    ceiling.add_argument(
        "--ceiling-backend",
        type=_backends,
        default=["torch"],
        metavar="B[,B...]",
        help="torch, onnx, openvino, openvino-bf16 or a comma list: each measured, the fastest named best "
        "in-process (default torch; onnx and openvino export the model on the fly)",
    )
    ceiling.add_argument(
        "--ceiling-model",
        default=None,
        metavar="PATH",
        help="model directory or hub id for the ceiling (default: the bundled all-MiniLM-L6-v2)",
    )
    load.add_argument(
        "--rounds",
        type=_positive_int,
        default=1,
        metavar="N",
        help="repeat ceiling, pool and peer N times per load; report medians and min..max (default 1)",
    )
    peer = parser.add_argument_group("peer")
    peer.add_argument(
        "--peer-url",
        default="",
        metavar="URL",
        help="another OpenAI-style embeddings server, run with the same load after the pool: "
        "POST URL/embeddings (e.g. http://host:7997, or http://host:8080/v1)",
    )
    peer.add_argument(
        "--peer-model",
        default="",
        metavar="NAME",
        help="model name sent to the peer (default: --model, else the model the pool answered "
        "with, else sentence-transformers/all-MiniLM-L6-v2)",
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
        "rounds": args.rounds,
    }


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _batches(args: argparse.Namespace, batch_size: int) -> list[list[str]]:
    lo, hi = args.length
    return bench_load.make_batches(batch_size, seed=args.seed, min_words=lo, max_words=hi)


# -- ceiling -------------------------------------------------------------------------------------

PEER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the bundled model's hub id


def _ceiling_size(args: argparse.Namespace, concurrency: int) -> int:
    return int(args.texts_per_call) * (concurrency if args.ceiling_batch == "offered" else 1)


def _load_ceilings(args: argparse.Namespace) -> dict[str, Any]:
    """Each backend's model, loaded once for every round (onnx and openvino export on load)."""
    threads = bench_load.cores()
    models: dict[str, Any] = {}
    for backend in args.ceiling_backend:
        _say(f"loading the in-process model, {backend} ({threads} threads)")
        models[backend] = bench_load.load_model(args.ceiling_model, threads, backend)
    return models


class _Ceilings:
    """The ceiling measurements of one round, per (backend, batch size); the one-text latency
    is measured once per backend for the whole run."""

    def __init__(self, args: argparse.Namespace, models: dict[str, Any]) -> None:
        self.args, self.models = args, models
        self.batch1: dict[str, float] = {}
        self.measured: dict[tuple[str, int], dict[str, Any]] = {}

    def new_round(self) -> None:
        self.measured = {}

    def get(self, backend: str, size: int) -> tuple[dict[str, Any], bool]:
        """The measurement, and whether it was taken just now (not earlier this round)."""
        key = (backend, size)
        if key in self.measured:
            return self.measured[key], False
        self.measured[key] = self._measure(backend, size)
        return self.measured[key], True

    def _measure(self, backend: str, size: int) -> dict[str, Any]:
        args, model = self.args, self.models[backend]
        whole = args.ceiling_batch == "whole"
        encode_batch = bench_load.LIBRARY_BATCH if whole else None
        _say(f"in-process ceiling ({backend}): encode() of {size}" + (f" by {encode_batch}" if whole else ""))
        duration, requests = _bounds(args)
        batches = _batches(args, size)
        sample = bench_load.run_in_process(
            model,
            batches,
            duration_s=duration,
            requests=requests,
            warmup_s=args.warmup,
            encode_batch=encode_batch,
        )
        name = Path(args.ceiling_model).name if args.ceiling_model else "all-MiniLM-L6-v2 (bundled)"
        sample.model = name
        settings = {
            "target": "in-process",
            "concurrency": 1,
            "batch_size": size,
            "threads": bench_load.cores(),
            **_common_settings(args),
            "model": name,
            "variant": "",
            "backend": backend,
            "backends": list(args.ceiling_backend),
            "ceiling_batch": args.ceiling_batch,
        }
        if whole:
            settings["encode_batch_size"] = encode_batch
        result = bench_report.summarize(sample, "in-process", settings)
        if backend not in self.batch1:
            if size == 1 and not whole:
                self.batch1[backend] = result["latency_ms"]["p50"]
            else:
                texts = [t for b in batches for t in b]
                self.batch1[backend] = round(bench_load.batch1_p50_ms(model, texts), 3)
        result["batch1_p50_ms"] = self.batch1[backend]
        return result


def _ceiling_for(ceiling: dict[str, Any], concurrency: int) -> dict[str, Any]:
    ceiling = dict(ceiling)
    ceiling["settings"] = {**ceiling["settings"], "ceiling_for_concurrency": concurrency}
    return ceiling


def _attach_ceilings(result: dict[str, Any], ceilings: dict[str, dict[str, Any]]) -> None:
    """The served run's ratios to each backend's ceiling: "ceiling"/"ratio" is torch's (else the
    first backend's), "ceilings"/"ratios" every one's when there are several."""
    main = "torch" if "torch" in ceilings else next(iter(ceilings))
    result["ceiling"] = ceilings[main]
    result["ratio"] = bench_report.ratios(result, ceilings[main])
    if len(ceilings) > 1:
        result["ceilings"] = ceilings
        result["ratios"] = {b: bench_report.ratios(result, c) for b, c in ceilings.items()}
        bench_report.best_in_process(result)


# -- served --------------------------------------------------------------------------------------


def _scrape(args: argparse.Namespace) -> bench_report.Samples | str:
    try:
        return bench_report.scrape(args.metrics_url)
    except (OSError, ValueError) as err:
        return f"cannot scrape {', '.join(args.metrics_url)}: {err}"


def _load_settings(args: argparse.Namespace, concurrency: int, batches: list[list[str]]) -> LoadSettings:
    duration, requests = _bounds(args)
    return LoadSettings(
        target=args.target,
        options=ClientOptions(
            target=args.target,
            token=args.token,
            tls=args.tls,
            root_certificates=args.root_certificates,
            timeout=args.timeout,
        ),
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


async def _rounds(args: argparse.Namespace, models: dict[str, Any]) -> list[dict[str, Any]]:
    """Every round runs, per load, the ceiling, then the pool, then the peer: each comparison
    is between runs minutes apart at most. Rounds are combined load by load."""
    ceilings = _Ceilings(args, models)
    batches = _batches(args, args.texts_per_call) if not args.in_process else []
    peer_model = args.peer_model or args.model
    per_round: list[list[dict[str, Any]]] = []
    for number in range(1, args.rounds + 1):
        if args.rounds > 1:
            _say(f"round {number} of {args.rounds}")
        ceilings.new_round()
        results: list[dict[str, Any]] = []
        for concurrency in args.concurrency:
            size = _ceiling_size(args, concurrency)
            measured: dict[str, dict[str, Any]] = {}
            for backend in models:
                ceiling, new = ceilings.get(backend, size)
                measured[backend] = _ceiling_for(ceiling, concurrency)
                if args.in_process and (new or args.ceiling_batch == "offered"):
                    results.append(measured[backend])
            if args.in_process:
                continue
            served = await _served(args, _load_settings(args, concurrency, batches))
            for result in served:
                if measured:
                    _attach_ceilings(result, measured)
            if args.peer_url:
                if not peer_model:  # the name the pool answered with: a pool as its own peer
                    peer_model = next((r["model"] for r in served if r["model"]), "") or PEER_MODEL
                peer = await _peer_run(args, _load_settings(args, concurrency, batches), peer_model)
                for result in served:
                    result["peer"] = peer
                    result["vs_peer"] = bench_report.ratios(result, peer)
            results.extend(served)
        per_round.append(results)
    return [bench_report.combine_rounds(list(runs)) for runs in zip(*per_round, strict=True)]


async def _served(args: argparse.Namespace, settings: LoadSettings) -> list[dict[str, Any]]:
    concurrency = settings.concurrency
    duration, requests = settings.duration_s, settings.requests
    channels = 1 if args.callers_per_channel <= 0 else math.ceil(concurrency / args.callers_per_channel)
    _say(
        f"served: {concurrency} caller(s) on {channels} channel(s), {args.texts_per_call} text(s)/call, "
        f"{duration if duration is not None else '-'}s / {requests or '-'} calls"
    )
    by_protocol: dict[str, dict[str, Any]] = {}
    for protocol in args.protocol:
        if len(args.protocol) > 1:
            _say(f"  over {protocol}")
        by_protocol[protocol] = await _served_run(args, settings, protocol, channels)
    if len(by_protocol) == 2:  # in either order: alternate it between runs to even out drift
        by_protocol["http"]["vs_grpc"] = bench_report.versus_grpc(by_protocol["http"], by_protocol["grpc"])
    return list(by_protocol.values())


async def _served_run(
    args: argparse.Namespace, settings: LoadSettings, protocol: str, channels: int
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
        "concurrency": settings.concurrency,
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
    return result


async def _peer_run(args: argparse.Namespace, settings: LoadSettings, model: str) -> dict[str, Any]:
    _say(f"peer: {bench_load.peer_endpoint(args.peer_url)}, model {model}")
    sample = await bench_load.run_peer_http(settings, args.peer_url, model)
    record = {
        "target": bench_load.peer_endpoint(args.peer_url),
        "protocol": "http",
        "concurrency": settings.concurrency,
        **_common_settings(args),
        "model": model,
        "variant": "",
        "timeout_s": args.timeout,
    }
    return bench_report.summarize(sample, "peer", record)


def run(args: argparse.Namespace) -> int:
    if args.peer_url and args.in_process:
        print("error: --peer-url runs beside the pool, not with --in-process", file=sys.stderr)
        return 2
    models: dict[str, Any] = {}
    try:
        if args.in_process or args.ceiling:
            models = _load_ceilings(args)
        results = asyncio.run(_rounds(args, models))
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        models.clear()
        gc.collect()
    if args.json:
        sweep = len(results) > 1
        print(json.dumps(results if sweep else results[0], indent=2))
    else:
        print(bench_report.format_report(results))
    if args.plot:
        bench_report.plot(results, args.plot)
        _say(f"plot written to {args.plot}")
    return 0 if all(r["ok_calls"] for r in results) else 1
