"""Reports of `embedpool bench`: result records, the table, served/ceiling and served/peer
ratios, medians and spreads over rounds, the pool's Prometheus metrics (scraped before and
after a run), and the concurrency plot."""

from __future__ import annotations

import re
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedpool.bench.load import Sample

Result = dict[str, Any]


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def summarize(sample: Sample, mode: str, settings: dict[str, Any]) -> Result:
    """One run as a JSON-ready record. Throughput and latency count successful calls only."""
    ok_latencies = np.array(
        [lat for lat, code in zip(sample.latencies_s, sample.codes, strict=True) if code == "OK"]
    )
    ok_texts = sum(n for n, code in zip(sample.texts, sample.codes, strict=True) if code == "OK")
    ok_calls = int(ok_latencies.size)
    elapsed = sample.elapsed_s
    errors = Counter(code for code in sample.codes if code != "OK")
    if ok_calls:
        p50, p90, p99 = np.percentile(ok_latencies, [50, 90, 99]) * 1000
        latency: dict[str, float | None] = {
            "p50": _r(p50),
            "p90": _r(p90),
            "p99": _r(p99),
            "mean": _r(ok_latencies.mean() * 1000),
            "max": _r(ok_latencies.max() * 1000),
        }
    else:
        latency = dict.fromkeys(("p50", "p90", "p99", "mean", "max"))
    result: Result = {
        "mode": mode,
        "settings": settings,
        "model": sample.model,
        "variant": sample.variant,
        "dimensions": sample.dimensions,
        "calls": len(sample.codes),
        "ok_calls": ok_calls,
        "error_calls": sum(errors.values()),
        "texts": ok_texts,
        "elapsed_s": _r(elapsed, 4),
        "throughput": {
            "texts_per_s": _r(ok_texts / elapsed, 2) if elapsed > 0 else 0.0,
            "calls_per_s": _r(ok_calls / elapsed, 2) if elapsed > 0 else 0.0,
        },
        "latency_ms": latency,
        "errors": dict(sorted(errors.items())),
        "error_messages": {code: sample.messages.get(code, "") for code in sorted(errors)},
        "client_cpu_cores": _r(sample.client_cpu_s / elapsed, 2) if elapsed > 0 else 0.0,
    }
    if mode == "served":
        result["server_timings_ms"] = (
            {
                "queue": _r(sample.server_queue_ns / ok_calls / 1e6),
                "inference": _r(sample.server_inference_ns / ok_calls / 1e6),
                "total": _r(sample.server_total_ns / ok_calls / 1e6),
            }
            if ok_calls
            else None
        )
    return result


def ratios(served: Result, ceiling: Result) -> dict[str, float | None]:
    """served / ceiling: throughputs (1.0 = as fast as the model alone) and latencies."""

    def div(a: float | None, b: float | None) -> float | None:
        return _r(a / b, 3) if a is not None and b else None

    return {
        "texts_per_s": div(served["throughput"]["texts_per_s"], ceiling["throughput"]["texts_per_s"]),
        "calls_per_s": div(served["throughput"]["calls_per_s"], ceiling["throughput"]["calls_per_s"]),
        "p50_ms": div(served["latency_ms"]["p50"], ceiling["latency_ms"]["p50"]),
        "p99_ms": div(served["latency_ms"]["p99"], ceiling["latency_ms"]["p99"]),
    }


def best_in_process(result: Result) -> None:
    """Name the fastest of several ceiling backends (texts/s) and the pool's ratios to it."""
    ceilings: dict[str, Result] = result.get("ceilings") or {}
    if len(ceilings) < 2:
        return
    best = max(ceilings, key=lambda b: ceilings[b]["throughput"]["texts_per_s"] or 0.0)
    result["best_in_process"] = {"backend": best, "ratio": result["ratios"][best]}


# Counts add up over rounds; rates, latencies and ratios take the median, with (min, max) kept.
_SUMMED = ("calls", "ok_calls", "error_calls", "texts")
_MEDIANS = ("throughput", "latency_ms", "server_timings_ms", "ratio", "vs_grpc", "vs_peer")
_NESTED = ("ceiling", "peer")  # records of their own, combined on their own


def _median_group(groups: Sequence[dict[str, Any] | None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per key: the median over rounds, and [min, max]; None where no round had a value."""
    present = [g for g in groups if g]
    medians: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for key in present[0] if present else ():
        values = [g[key] for g in present if g.get(key) is not None]
        medians[key] = _r(float(np.median(values))) if values else None
        spread[key] = [_r(min(values)), _r(max(values))] if values else None
    return medians, spread


def _combine_pool_metrics(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    failed = next((m for m in rounds if "error" in m), None)
    if failed is not None:
        return failed
    out: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if key.endswith("_mean"):
            out[key] = _median_group([{key: m[key]} for m in rounds])[0][key]
        elif isinstance(value, dict):
            total: Counter[str] = Counter()
            for m in rounds:
                total.update(m[key])
            out[key] = dict(total)
        else:
            out[key] = sum(m[key] for m in rounds)
    return out


def combine_rounds(rounds: Sequence[Result]) -> Result:
    """One load's rounds as one record: counts summed, the median of every rate, latency and
    ratio (the ratios of each round's own pair: ceiling, pool and peer ran minutes apart at
    most), their [min, max] under "spread", and each round's own record under "rounds"."""
    first = rounds[0]
    if len(rounds) == 1:
        return first
    out: Result = dict(first)
    for key in _SUMMED:
        out[key] = sum(r[key] for r in rounds)
    out["elapsed_s"] = _r(sum(r["elapsed_s"] for r in rounds), 4)
    errors: Counter[str] = Counter()
    messages: dict[str, str] = {}
    for r in rounds:
        errors.update(r["errors"])
        for code, message in r["error_messages"].items():
            messages.setdefault(code, message)
    out["errors"], out["error_messages"] = dict(sorted(errors.items())), dict(sorted(messages.items()))
    out["client_cpu_cores"] = _r(float(np.median([r["client_cpu_cores"] for r in rounds])), 2)
    spread: dict[str, Any] = {}
    for key in _MEDIANS:
        if first.get(key) is not None:
            out[key], spread[key] = _median_group([r.get(key) for r in rounds])
    if "ratios" in first:
        out["ratios"], spread["ratios"] = {}, {}
        for backend in first["ratios"]:
            out["ratios"][backend], spread["ratios"][backend] = _median_group(
                [r["ratios"][backend] for r in rounds]
            )
    for key in _NESTED:
        if key in first:
            out[key] = combine_rounds([r[key] for r in rounds])
    if "ceilings" in first:
        out["ceilings"] = {b: combine_rounds([r["ceilings"][b] for r in rounds]) for b in first["ceilings"]}
        out["ceiling"] = out["ceilings"][first["ceiling"]["settings"]["backend"]]
    if "pool_metrics" in first:
        out["pool_metrics"] = _combine_pool_metrics([r["pool_metrics"] for r in rounds])
    out.pop("best_in_process", None)
    best_in_process(out)
    out["spread"] = spread
    # The nested ceiling and peer records keep their own rounds: not twice.
    out["rounds"] = [
        {k: v for k, v in r.items() if k not in (*_NESTED, "ceilings", "best_in_process")} for r in rounds
    ]
    return out


# -- table ---------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _with_spread(value: float | None, low_high: Sequence[float] | None, spec: str) -> str:
    """``value``, and its spread over rounds as (min..max) where there were rounds."""
    cell = _fmt(value, spec)
    if value is not None and low_high:
        cell += f" ({format(low_high[0], spec)}..{format(low_high[1], spec)})"
    return cell


def _cell(r: Result, group: str, key: str, spec: str) -> str:
    spread = (r.get("spread") or {}).get(group) or {}
    return _with_spread((r.get(group) or {}).get(key), spread.get(key), spec)


def _measurement(result: Result) -> tuple[Any, ...]:
    s = result["settings"]
    return (
        result["mode"],
        s.get("backend"),
        s.get("batch_size"),
        s["concurrency"],
        result["calls"],
        result["elapsed_s"],
    )


def _run_name(r: Result) -> str:
    s = r["settings"]
    if r["mode"] == "peer":
        return "peer"
    if r["mode"] != "served":
        backend = s.get("backend", "torch")
        return "ceiling" if s.get("backends", [backend]) == ["torch"] else f"ceiling/{backend}"
    protocol = s.get("protocol", "grpc")
    return "served" if protocol == "grpc" else f"served/{protocol}"


def _where(r: Result) -> str:
    s = r["settings"]
    if r["mode"] == "in-process":
        return _run_name(r)
    where = f"concurrency {s['concurrency']}"
    if r["mode"] == "peer":
        return f"peer at {where}"
    protocol = s.get("protocol", "grpc")
    return where if protocol == "grpc" else f"{where} over {protocol}"


def _batch(s: dict[str, Any]) -> str:
    batch = str(s.get("batch_size", s["texts_per_call"]))
    # A whole-list ceiling: one encode() of the call's texts, which the library cuts itself.
    return f"{batch}/{s['encode_batch_size']}" if s.get("encode_batch_size") else batch


def _ratios_line(ratio: dict[str, Any], spread: dict[str, Any] | None) -> str:
    spread = spread or {}
    return ", ".join(
        f"{label} {_with_spread(ratio.get(key), spread.get(key), '.2f')}x"
        for label, key in (("texts/s", "texts_per_s"), ("p50", "p50_ms"), ("p99", "p99_ms"))
    )


def versus_grpc(http: Result, grpc: Result) -> dict[str, float | None]:
    """The HTTP front against gRPC in the same run: added p50 latency, throughput ratio."""
    p50_http, p50_grpc = http["latency_ms"]["p50"], grpc["latency_ms"]["p50"]
    tps_http, tps_grpc = http["throughput"]["texts_per_s"], grpc["throughput"]["texts_per_s"]
    return {
        "p50_added_ms": _r(p50_http - p50_grpc) if p50_http is not None and p50_grpc is not None else None,
        "throughput_ratio": _r(tps_http / tps_grpc) if tps_grpc else None,
    }


def format_report(results: Sequence[Result]) -> str:
    """The human-readable report: a settings line, one table row per run (ceilings first, the
    peer last), then errors, comparisons and the pool's own metrics. Over rounds, a cell is the
    median with its (min..max)."""
    if not results:
        return "no runs"
    first = results[0]["settings"]
    duration = "-" if first["duration_s"] is None else f"{first['duration_s']:g}s"
    rounds = int(first.get("rounds", 1))
    lines = [
        f"target {first.get('target', '-')}  model {first.get('model') or '(default)'}"
        f"{'/' + first['variant'] if first.get('variant') else ''}  "
        f"{first['texts_per_call']} text(s)/call  {first['length'][0]}-{first['length'][1]} words  "
        f"warmup {first['warmup_s']:g}s  duration {duration}  "
        f"requests {first['requests'] or '-'}  seed {first['seed']}"
        + (f"  rounds {rounds}: median (min..max)" if rounds > 1 else "")
    ]
    header = ("RUN", "CONC", "BATCH", "CALLS", "ERRORS", "TEXTS/S", "CALLS/S", "P50 MS", "P90 MS", "P99 MS")
    rows: list[tuple[str, ...]] = [(*header, "VS CEIL", "VS PEER")]
    # A sweep shares one ceiling measurement between runs: list each measurement once.
    ceilings: dict[tuple[Any, ...], Result] = {}
    peers: dict[tuple[Any, ...], Result] = {}
    for result in results:
        if result["mode"] != "served":
            ceilings.setdefault(_measurement(result), result)
            continue
        for ceiling in (result.get("ceilings") or {"": result.get("ceiling")}).values():
            if ceiling is not None:
                ceilings.setdefault(_measurement(ceiling), ceiling)
        if result.get("peer"):
            peers.setdefault(_measurement(result["peer"]), result["peer"])
    served = [r for r in results if r["mode"] == "served"]
    runs = list(ceilings.values()) + served + list(peers.values())
    for r in runs:
        s = r["settings"]
        rows.append(
            (
                _run_name(r),
                str(s["concurrency"]),
                _batch(s),
                str(r["calls"]),
                str(r["error_calls"]),
                _cell(r, "throughput", "texts_per_s", ".1f"),
                _fmt(r["throughput"]["calls_per_s"]),
                _cell(r, "latency_ms", "p50", ".2f"),
                _fmt(r["latency_ms"]["p90"], ".2f"),
                _cell(r, "latency_ms", "p99", ".2f"),
                _cell(r, "ratio", "texts_per_s", ".0%") if r.get("ratio") else "",
                _cell(r, "vs_peer", "texts_per_s", ".0%") if r.get("vs_peer") else "",
            )
        )
    # A column no run fills (no ceiling, no peer) is left out.
    keep = [c for c in range(len(rows[0])) if c < len(header) or any(row[c] for row in rows[1:])]
    rows = [tuple(row[c] for c in keep) for row in rows]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    for r in runs:
        for code, count in r["errors"].items():
            message = r["error_messages"].get(code) or ""
            lines.append(f"{_where(r)}: {count} x {code}" + (f" ({message})" if message else ""))
    for r in served:
        vs = r.get("vs_grpc")
        if vs:
            added, ratio = _fmt(vs["p50_added_ms"], "+.2f"), _fmt(vs["throughput_ratio"], ".2f")
            lines.append(
                f"concurrency {r['settings']['concurrency']}: http vs grpc: "
                f"p50 {added} ms, throughput {ratio}x"
            )
    for r in served:
        best = r.get("best_in_process")
        if best:
            backend = best["backend"]
            ceiling = r["ceilings"][backend]
            spread = (r.get("spread") or {}).get("ratios") or {}
            line = (
                f"{_where(r)}: best in-process {backend} "
                f"({_cell(ceiling, 'throughput', 'texts_per_s', '.1f')} texts/s); "
                f"pool/{backend}: {_ratios_line(best['ratio'], spread.get(backend))}"
            )
            if "torch" in r["ratios"] and backend != "torch":
                line += f"; pool/torch: {_ratios_line(r['ratios']['torch'], spread.get('torch'))}"
            lines.append(line)
        if r.get("vs_peer"):
            peer = r["peer"]["settings"]
            lines.append(
                f"{_where(r)}: pool/peer ({peer['target']}, model {peer['model']}): "
                f"{_ratios_line(r['vs_peer'], (r.get('spread') or {}).get('vs_peer'))}"
            )
    # A sweep's ceilings share their one-text line: once per backend.
    one_text = (
        f"{_run_name(c)}: one-text encode() p50 {c['batch1_p50_ms']:.2f} ms"
        for c in ceilings.values()
        if c.get("batch1_p50_ms") is not None
    )
    lines.extend(dict.fromkeys(one_text))
    for r in served:
        # OpenAI's answer carries no timings: the pool's own are in gRPC runs only.
        if r["model"] and r["settings"].get("protocol", "grpc") == "grpc":
            timings = r.get("server_timings_ms") or {}
            lines.append(
                f"concurrency {r['settings']['concurrency']}: served by {r['model']}/{r['variant']}; "
                f"pool timings per call (ms): queue {_fmt(timings.get('queue'), '.2f')}, "
                f"inference {_fmt(timings.get('inference'), '.2f')}, "
                f"total {_fmt(timings.get('total'), '.2f')}; "
                f"client CPU {r['client_cpu_cores']:.2f} cores"
            )
        metrics = r.get("pool_metrics")
        if metrics:
            lines.append(
                f"concurrency {r['settings']['concurrency']}: pool metrics: {format_pool_metrics(metrics)}"
            )
    return "\n".join(lines)


# -- the pool's Prometheus metrics -----------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_HISTOGRAMS = {
    "batch_size": "embedpool_batch_size",
    "queue_ms": "embedpool_queue_ms",
    "inference_ms": "embedpool_inference_ms",
    "request_tokens": "embedpool_request_tokens",
}
_REQUESTS = "embedpool_requests"
_STREAM_BATCHES = "embedpool_stream_batches"

Samples = list[tuple[str, dict[str, str], float]]


def parse_prometheus(text: str) -> Samples:
    """(name, labels, value) for every sample line of the Prometheus text format."""
    out: Samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out.append((match.group(1), dict(_LABEL.findall(match.group(2) or "")), value))
    return out


def scrape(urls: Sequence[str], timeout_s: float = 5.0) -> Samples:
    """The samples of every URL (one per Ray node), concatenated. Raises OSError."""
    samples: Samples = []
    for url in urls:
        if "://" not in url:
            url = "http://" + url
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            samples.extend(parse_prometheus(response.read().decode("utf-8", "replace")))
    return samples


def _base(name: str) -> str:
    return name[4:] if name.startswith("ray_") else name


def _select(samples: Samples, model: str, variant: str) -> dict[tuple[str, str], float]:
    """Sum of values per (metric name without ray_, le label), for the chosen model/variant."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for name, labels, value in samples:
        base = _base(name)
        if not base.startswith("embedpool_"):
            continue
        if model and labels.get("model", model) != model:
            continue
        if variant and labels.get("variant", variant) != variant:
            continue
        key = labels.get("le", "") if base.endswith("_bucket") else labels.get("code", "")
        totals[(base, key)] += value
    return totals


def pool_metrics(before: Samples, after: Samples, *, model: str = "", variant: str = "") -> dict[str, Any]:
    """What the pool recorded between two scrapes: means of its histograms and the batch-size
    histogram (batches per size bucket), requests by code. Ray exports on a timer (a few
    seconds), so the window can lag the run by that much; the means hold up better than
    the counts. The means are estimates: Ray 2.60 exports a histogram's sum as if each
    observation sat at its bucket's midpoint (a one-text batch counts 0.5, a 32-text one 24)."""
    a = _select(after, model, variant)
    b = _select(before, model, variant)
    delta = {key: a[key] - b.get(key, 0.0) for key in a}
    if not delta:
        return {"error": "no embedpool metrics found (is Ray's --metrics-export-port reachable?)"}
    out: dict[str, Any] = {}
    for label, base in _HISTOGRAMS.items():
        count = delta.get((base + "_count", ""), 0.0)
        total = delta.get((base + "_sum", ""), 0.0)
        out[f"{label}_mean"] = _r(total / count) if count > 0 else None
    out["batches"] = int(delta.get(("embedpool_batch_size_count", ""), 0.0))
    out["stream_batches"] = int(
        sum(delta.get((name, ""), 0.0) for name in (_STREAM_BATCHES, _STREAM_BATCHES + "_total"))
    )
    buckets = sorted(
        ((float(le), value) for (name, le), value in delta.items() if name == "embedpool_batch_size_bucket"),
        key=lambda item: item[0],
    )
    histogram: dict[str, int] = {}
    previous = 0.0
    for le, cumulative in buckets:
        histogram["+Inf" if le == float("inf") else f"<={le:g}"] = round(cumulative - previous)
        previous = cumulative
    out["batch_size_histogram"] = {k: v for k, v in histogram.items() if v}
    codes = {
        code or "?": int(value)
        for (name, code), value in delta.items()
        if name in (_REQUESTS, _REQUESTS + "_total") and value
    }
    out["requests_by_code"] = dict(sorted(codes.items()))
    return out


def format_pool_metrics(metrics: dict[str, Any]) -> str:
    if "error" in metrics:
        return str(metrics["error"])
    hist = ", ".join(f"{k}: {v}" for k, v in metrics.get("batch_size_histogram", {}).items())
    return (
        f"{metrics['batches']} batches ({metrics.get('stream_batches', 0)} on a stream), "
        f"bucket-midpoint means: batch ~{_fmt(metrics['batch_size_mean'], '.2f')} texts, "
        f"queue ~{_fmt(metrics['queue_ms_mean'], '.2f')} ms, "
        f"inference ~{_fmt(metrics['inference_ms_mean'], '.2f')} ms"
        + (f"; batch sizes {hist}" if hist else "")
    )


# -- plot ----------------------------------------------------------------------------------------


def _x(result: Result) -> int:
    """Where a run goes on the concurrency axis: a ceiling stands for the served load it
    is the ceiling of (it runs one caller itself)."""
    settings = result["settings"]
    return int(settings.get("ceiling_for_concurrency") or settings["concurrency"])


def plot(results: Sequence[Result], path: str) -> None:
    """Throughput (texts/s) and p99 latency against concurrency: served runs solid, their
    ceilings dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = [r for r in results if r["mode"] == "served"]
    ceilings = [r.get("ceiling") for r in served]
    in_process = [r for r in results if r["mode"] == "in-process"]
    if not served and in_process:
        ceilings, served = list(in_process), []

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = []
    if served:
        series.append(("served", served, "o-", "tab:blue"))
    points = [c for c in ceilings if c is not None]
    if points:
        series.append(("in-process ceiling", points, "s--", "tab:orange"))
    peers = [r["peer"] for r in served if r.get("peer")]
    if peers:
        series.append(("peer", peers, "^:", "tab:green"))
    for label, runs, style, color in series:
        xs = [_x(r) for r in runs]
        left.plot(xs, [r["throughput"]["texts_per_s"] for r in runs], style, color=color, label=label)
        p99 = [r["latency_ms"]["p99"] for r in runs]
        right.plot(xs, [np.nan if v is None else v for v in p99], style, color=color, label=label)
    all_x = sorted({_x(r) for r in (served or points)})
    for ax, title, ylabel in (
        (left, "Throughput", "texts/s"),
        (right, "p99 latency", "ms"),
    ):
        ax.set_title(title)
        ax.set_xlabel("concurrency (callers)")
        ax.set_ylabel(ylabel)
        if len(all_x) > 1 and all_x[-1] / max(all_x[0], 1) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(all_x, [str(x) for x in all_x])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if served or points:
        first = (served or points)[0]
        s = first["settings"]
        model = s.get("model") or first.get("model") or "(default)"
        fig.suptitle(
            f"embedpool bench: {s.get('texts_per_call')} text(s)/call, "
            f"{s['length'][0]}-{s['length'][1]} words, model {model}"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
