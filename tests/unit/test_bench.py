"""`embedpool bench` against the fake pool (conftest's `target` and `pool` fixtures): counts,
errors, sweeps, plot, metrics, ceiling (per batch mode and backend), rounds, the peer.

No timed assertions: the numbers depend on the machine; the tests check shapes and counts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from embedpool.bench import load as bench_load
from embedpool.bench import report as bench_report
from embedpool.cli import main
from embedpool.server.errors import Overloaded
from embedpool.server.fronts.http_server import start_http_server
from embedpool.server.service.core import RouterCore
from tests.net import free_port
from tests.unit.conftest import Pool, Serve
from tests.unit.fake_backend import DIMS, FakeBackend, serving

Capsys = pytest.CaptureFixture[str]
LATENCY_KEYS = {"p50", "p90", "p99", "mean", "max"}


def bench(capsys: Capsys, *args: str, rc: int = 0) -> Any:
    assert main(list(args)) == rc
    return json.loads(capsys.readouterr().out)


def test_json_counts(target: str, pool: Pool, capsys: Capsys) -> None:
    data = bench(capsys, "--target", target, "bench", "--concurrency", "2", "--requests", "20", "--json")
    assert data["mode"] == "served"
    assert (data["calls"], data["ok_calls"], data["error_calls"], data["texts"]) == (20, 20, 0, 20)
    assert data["errors"] == {} and data["error_messages"] == {}
    assert (data["model"], data["variant"], data["dimensions"]) == ("fake", "custom-cpu", DIMS)
    assert set(data["latency_ms"]) == LATENCY_KEYS and all(v > 0 for v in data["latency_ms"].values())
    lat = data["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert data["throughput"]["texts_per_s"] > 0 and data["throughput"]["calls_per_s"] > 0
    assert data["elapsed_s"] > 0 and data["server_timings_ms"]["inference"] > 0
    settings = data["settings"]
    assert settings["target"] == target and settings["concurrency"] == 2 and settings["requests"] == 20
    assert settings["texts_per_call"] == 1 and settings["channels"] == 1
    # Warmup sends at most --requests more; every call carries one text, raw bytes, truncation on.
    embeds = pool.calls_of("Embed")
    assert 20 <= len(embeds) <= 40 and set(pool.embed_batch_sizes) == {1}
    assert all(r.encoding == "bytes" and r.item.truncate for r in embeds)


def test_sweep_json_and_plot(target: str, pool: Pool, capsys: Capsys, tmp_path: Path) -> None:
    png = tmp_path / "sweep.png"
    args = ["--target", target, "bench", "--concurrency", "1,3", "--texts-per-call", "4"]
    args += ["--length", "3:9", "--requests", "12", "--warmup", "0", "--json", "--plot", str(png)]
    data = bench(capsys, *args)
    assert [r["settings"]["concurrency"] for r in data] == [1, 3]
    assert all(r["ok_calls"] == 12 and r["texts"] == 48 for r in data)
    assert set(pool.embed_batch_sizes) == {4} and len(pool.embed_batch_sizes) == 24
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_model_counts_not_found(target: str, pool: Pool, capsys: Capsys) -> None:
    args = ["--target", target, "bench", "--model", "nope", "--requests", "10", "--warmup", "0"]
    data = bench(capsys, *args, "--json", rc=1)  # no call succeeded: status 1, still a report
    assert (data["calls"], data["ok_calls"], data["errors"]) == (10, 0, {"NOT_FOUND": 10})
    assert "unknown model 'nope'" in data["error_messages"]["NOT_FOUND"]
    assert data["latency_ms"]["p50"] is None and data["throughput"]["texts_per_s"] == 0
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "concurrency 1: 10 x NOT_FOUND (unknown model 'nope'" in out


def test_some_errors_and_table(target: str, pool: Pool, capsys: Capsys) -> None:
    pool.backend.fail_next(*[Overloaded("queue full")] * 3)
    assert main(["--target", target, "bench", "--requests", "10", "--warmup", "0", "--concurrency", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"target {target}  model (default)  1 text(s)/call")
    assert lines[1].split()[:5] == ["RUN", "CONC", "BATCH", "CALLS", "ERRORS"]
    assert lines[2].split()[:5] == ["served", "2", "1", "10", "3"]
    assert "concurrency 2: 3 x RESOURCE_EXHAUSTED (queue full)" in lines


def test_cannot_connect(capsys: Capsys) -> None:
    assert main(["--target", "127.0.0.1:1", "--timeout", "0.3", "bench", "--requests", "1"]) == 1
    assert "cannot connect to 127.0.0.1:1 within 0.3s" in capsys.readouterr().err
    # The connection options work after the subcommand too.
    assert main(["bench", "--target", "127.0.0.1:1", "--timeout", "0.2", "--requests", "1"]) == 1
    assert "cannot connect to 127.0.0.1:1 within 0.2s" in capsys.readouterr().err


def test_usage_errors(capsys: Capsys) -> None:
    assert main(["bench", "--length", "9:3"]) == 2
    assert main(["bench", "--concurrency", "0"]) == 2
    assert main(["bench", "--in-process", "--ceiling"]) == 2


def test_texts_are_deterministic_and_bounded() -> None:
    a = bench_load.make_texts(50, seed=3, min_words=2, max_words=6)
    assert a == bench_load.make_texts(50, seed=3, min_words=2, max_words=6)
    assert a != bench_load.make_texts(50, seed=4, min_words=2, max_words=6)
    assert all(2 <= len(t.split()) <= 6 for t in a) and len({len(t.split()) for t in a}) > 1
    # Every batch size cuts the same stream, so a ceiling at another batch size sees the same texts.
    ones = bench_load.make_batches(1, seed=0, min_words=2, max_words=6)
    fours = bench_load.make_batches(4, seed=0, min_words=2, max_words=6)
    assert [t for b in ones[:8] for t in b] == [t for b in fours[:2] for t in b]


# -- the pool's Prometheus metrics ---------------------------------------------------------------

BEFORE = """# HELP ray_embedpool_batch_size Texts per model forward pass.
# TYPE ray_embedpool_batch_size histogram
ray_embedpool_batch_size_bucket{Component="core_worker",le="1.0",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_batch_size_bucket{Component="core_worker",le="2.0",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_batch_size_bucket{Component="core_worker",le="+Inf",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_batch_size_count{Component="core_worker",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_batch_size_sum{Component="core_worker",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_queue_ms_count{model="fake",variant="custom-cpu"} 5.0
ray_embedpool_queue_ms_sum{model="fake",variant="custom-cpu"} 10.0
ray_embedpool_requests_total{code="OK",method="Embed",model="fake",variant="custom-cpu"} 5.0
ray_embedpool_stream_batches_total{model="fake",variant="custom-cpu"} 1.0
ray_embedpool_batch_size_count{model="other",variant="torch-cpu"} 99.0
"""
AFTER = """\
ray_embedpool_batch_size_bucket{Component="core_worker",le="1.0",model="fake",variant="custom-cpu"} 7.0
ray_embedpool_batch_size_bucket{Component="core_worker",le="2.0",model="fake",variant="custom-cpu"} 11.0
ray_embedpool_batch_size_bucket{Component="core_worker",le="+Inf",model="fake",variant="custom-cpu"} 11.0
ray_embedpool_batch_size_count{Component="core_worker",model="fake",variant="custom-cpu"} 11.0
ray_embedpool_batch_size_sum{Component="core_worker",model="fake",variant="custom-cpu"} 19.0
ray_embedpool_queue_ms_count{model="fake",variant="custom-cpu"} 15.0
ray_embedpool_queue_ms_sum{model="fake",variant="custom-cpu"} 40.0
ray_embedpool_requests_total{code="OK",method="Embed",model="fake",variant="custom-cpu"} 15.0
ray_embedpool_stream_batches_total{model="fake",variant="custom-cpu"} 4.0
ray_embedpool_batch_size_count{model="other",variant="torch-cpu"} 500.0
"""


@pytest.fixture
def metrics_url() -> Iterator[str]:
    pages = [BEFORE, AFTER]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (pages.pop(0) if len(pages) > 1 else pages[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_pool_metrics(target: str, pool: Pool, metrics_url: str, capsys: Capsys) -> None:
    args = ["--target", target, "bench", "--requests", "5", "--warmup", "0", "--model", "fake"]
    data = bench(capsys, *args, "--metrics-url", metrics_url, "--json")
    metrics = data["pool_metrics"]
    assert metrics["batches"] == 6 and metrics["batch_size_mean"] == pytest.approx(14 / 6, abs=1e-3)
    assert metrics["batch_size_histogram"] == {"<=1": 2, "<=2": 4}
    assert metrics["queue_ms_mean"] == 3.0 and metrics["inference_ms_mean"] is None
    assert metrics["requests_by_code"] == {"OK": 10}
    assert metrics["stream_batches"] == 3  # batches run on an OpenVINO stream beside another


def test_pool_metrics_unreachable_is_reported(target: str, pool: Pool, capsys: Capsys) -> None:
    args = ["--target", target, "bench", "--requests", "3", "--warmup", "0", "--metrics-url", "127.0.0.1:1"]
    data = bench(capsys, *args, "--json")
    assert data["ok_calls"] == 3 and "cannot scrape" in data["pool_metrics"]["error"]


# -- the ceiling, with a stand-in for the model ----------------------------------------------------


class FakeModel:
    def __init__(self, backend: str = "torch", log: list[str] | None = None) -> None:
        self.backend = backend
        self.batches: list[int] = []
        self.encode_batches: list[int] = []
        self.log = log

    def encode(self, texts: list[str], **kwargs: Any) -> None:
        assert (
            kwargs["batch_size"] in (len(texts), bench_load.LIBRARY_BATCH) and kwargs["normalize_embeddings"]
        )
        self.batches.append(len(texts))
        self.encode_batches.append(kwargs["batch_size"])
        if self.log is not None:
            self.log.append(f"ceiling/{self.backend}")
        time.sleep(0.0005)

    def get_sentence_embedding_dimension(self) -> int:
        return DIMS


class FakeModels:
    """One stand-in per backend, and the loads asked for."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.by_backend: dict[str, FakeModel] = {}
        self.log: list[str] | None = None

    def load(self, path: str | None = None, threads: int | None = None, backend: str = "torch") -> FakeModel:
        self.loads.append(backend)
        return self.by_backend.setdefault(backend, FakeModel(backend, self.log))


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> FakeModels:
    models = FakeModels()
    monkeypatch.setattr(bench_load, "load_model", models.load)
    return models


@pytest.fixture
def fake_model(fake_models: FakeModels) -> FakeModel:
    return fake_models.load()


def test_ceiling_then_served(
    target: str, pool: Pool, fake_model: FakeModel, capsys: Capsys, tmp_path: Path
) -> None:
    png = tmp_path / "ceiling.png"
    args = ["--target", target, "bench", "--ceiling", "--concurrency", "1,2", "--texts-per-call", "2"]
    args += ["--requests", "6", "--warmup", "0", "--json", "--plot", str(png)]
    data = bench(capsys, *args)
    assert [r["mode"] for r in data] == ["served", "served"]
    for result in data:
        ceiling = result["ceiling"]
        assert ceiling["mode"] == "in-process" and ceiling["ok_calls"] == 6
        assert ceiling["settings"]["batch_size"] == 2
        assert ceiling["settings"]["ceiling_for_concurrency"] == result["settings"]["concurrency"]
        assert ceiling["batch1_p50_ms"] > 0
        assert set(result["ratio"]) == {"texts_per_s", "calls_per_s", "p50_ms", "p99_ms"}
        assert result["ratio"]["texts_per_s"] == pytest.approx(
            result["throughput"]["texts_per_s"] / ceiling["throughput"]["texts_per_s"], rel=1e-2
        )
    assert png.stat().st_size > 0
    # One ceiling measurement serves the whole sweep (same batch size): listed once in the table.
    table = bench_report.format_report(data).splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["ceiling", "served", "served"]
    assert table[3].endswith("%")


def test_in_process_offered_batches(fake_model: FakeModel, capsys: Capsys) -> None:
    args = ["bench", "--in-process", "--ceiling-batch", "offered", "--concurrency", "1,4"]
    data = bench(capsys, *args, "--texts-per-call", "3", "--requests", "4", "--warmup", "0", "--json")
    assert [r["settings"]["batch_size"] for r in data] == [3, 12]
    assert all(r["mode"] == "in-process" and r["texts"] == 4 * r["settings"]["batch_size"] for r in data)
    assert {3, 12} <= set(fake_model.batches)


@asynccontextmanager
async def http_front(core: RouterCore) -> AsyncIterator[str]:
    """The pool's HTTP front over the fake pool's core, on loopback."""
    port = free_port()
    server = await start_http_server(core, port, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop(1)


def test_http_beside_grpc_in_one_run(pool: Pool, serve: Serve, capsys: Capsys) -> None:
    url = serve(http_front(pool.core))
    args = ["--target", pool.target, "bench", "--protocol", "grpc,http", "--http-url", url]
    args += ["--texts-per-call", "3", "--requests", "12", "--warmup", "0", "--json"]
    grpc_run, http_run = bench(capsys, *args)
    assert [r["settings"]["protocol"] for r in (grpc_run, http_run)] == ["grpc", "http"]
    for run in (grpc_run, http_run):
        assert (run["ok_calls"], run["error_calls"], run["texts"]) == (12, 0, 36)
        assert run["dimensions"] == DIMS
    assert http_run["settings"]["target"] == url and http_run["model"] == "fake"
    assert set(http_run["vs_grpc"]) == {"p50_added_ms", "throughput_ratio"} and "vs_grpc" not in grpc_run
    embeds = pool.calls_of("Embed")  # both protocols reached the same core, bytes and truncation on
    assert len(embeds) == 24 and all(r.encoding == "bytes" and r.item.truncate for r in embeds)
    # The table names each run's protocol and the comparison.
    assert main([*args[:-1]]) == 0
    out = capsys.readouterr().out
    assert "served/http" in out and "http vs grpc: p50" in out


def test_http_protocol_without_a_front_says_so(pool: Pool, capsys: Capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert (
        main(["--target", pool.target, "bench", "--protocol", "http", "--http-url", url, "--requests", "2"])
        == 1
    )
    assert "is the pool's HTTP front on?" in capsys.readouterr().err


# -- ceiling backends, the whole-list ceiling, rounds, the peer ------------------------------------


def test_new_options_parse(capsys: Capsys) -> None:
    from embedpool.bench.cli import _backends

    assert _backends("torch") == ["torch"] and _backends("onnx, openvino") == ["onnx", "openvino"]
    assert main(["bench", "--ceiling-backend", "tensorrt"]) == 2
    assert main(["bench", "--ceiling-backend", "onnx,onnx"]) == 2
    assert main(["bench", "--ceiling-batch", "all"]) == 2
    assert main(["bench", "--rounds", "0"]) == 2
    assert main(["bench", "--in-process", "--peer-url", "http://127.0.0.1:1"]) == 2
    assert "--peer-url runs beside the pool" in capsys.readouterr().err
    assert bench_load.peer_endpoint("http://h:7997") == "http://h:7997/embeddings"
    assert bench_load.peer_endpoint("http://h:8080/v1/") == "http://h:8080/v1/embeddings"
    assert bench_load.peer_endpoint("http://h/v1/embeddings") == "http://h/v1/embeddings"


def test_whole_list_ceiling_is_one_encode_at_the_library_batch(fake_model: FakeModel, capsys: Capsys) -> None:
    args = ["bench", "--in-process", "--ceiling-batch", "whole", "--texts-per-call", "100"]
    data = bench(capsys, *args, "--requests", "3", "--warmup", "0", "--json")
    assert data["settings"]["batch_size"] == 100 and data["settings"]["encode_batch_size"] == 32
    assert data["texts"] == 300 and data["settings"]["ceiling_batch"] == "whole"
    # Every call hands encode() the call's whole list and lets the library cut it by 32
    # (the one-text latency probe aside).
    whole = [(n, b) for n, b in zip(fake_model.batches, fake_model.encode_batches, strict=True) if n > 1]
    assert whole and set(whole) == {(100, 32)}
    table = bench_report.format_report([data]).splitlines()
    assert table[2].split()[:3] == ["ceiling", "1", "100/32"]


def test_bulk_call_of_2048_texts_end_to_end(serve: Serve, fake_model: FakeModel, capsys: Capsys) -> None:
    """Load (d): one caller, 2048 texts per call, against its whole-list ceiling."""
    # The pool cuts a bulk call into batches, each a queued request: room for them all.
    limits = {"max_inputs": 2048, "max_queued": 1024, "max_message_bytes": 64 * 1024 * 1024}
    target, core, _ = serve(serving(FakeBackend(), **limits))
    args = ["--target", target, "bench", "--concurrency", "1", "--texts-per-call", "2048"]
    args += ["--requests", "2", "--warmup", "0", "--ceiling", "--ceiling-batch", "whole", "--json"]
    data = bench(capsys, *args)
    assert (data["ok_calls"], data["texts"], data["error_calls"]) == (2, 4096, 0)
    assert [len(r.item.texts) for r in core.calls_of("Embed")] == [2048, 2048]
    assert data["ceiling"]["settings"]["encode_batch_size"] == 32 and data["ratio"]["texts_per_s"] > 0
    assert (2048, 32) in zip(fake_model.batches, fake_model.encode_batches, strict=True)


def test_backends_loaded_once_and_best_named(
    target: str, pool: Pool, fake_models: FakeModels, capsys: Capsys
) -> None:
    args = ["--target", target, "bench", "--ceiling", "--ceiling-backend", "torch,onnx,openvino"]
    args += [
        "--concurrency",
        "1,2",
        "--texts-per-call",
        "2",
        "--requests",
        "4",
        "--warmup",
        "0",
        "--rounds",
        "2",
    ]
    data = bench(capsys, *args, "--json")
    assert fake_models.loads == ["torch", "onnx", "openvino"]  # once per run, not per round
    for result in data:
        assert set(result["ceilings"]) == {"torch", "onnx", "openvino"} and set(result["ratios"]) == set(
            result["ceilings"]
        )
        assert (
            result["ceiling"]["settings"]["backend"] == "torch"
            and result["ratio"] == result["ratios"]["torch"]
        )
        best = result["best_in_process"]
        fastest = max(result["ceilings"].values(), key=lambda c: c["throughput"]["texts_per_s"])
        assert (
            best["backend"] == fastest["settings"]["backend"]
            and best["ratio"] == result["ratios"][best["backend"]]
        )
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert rows[:5] == ["ceiling/torch", "ceiling/onnx", "ceiling/openvino", "served", "served"]
    assert "best in-process" in out and ("pool/torch:" in out or best["backend"] == "torch")
    assert "ceiling/onnx: one-text encode() p50" in out


def _result(mode: str, latencies_ms: list[float], elapsed_s: float, **settings: Any) -> bench_report.Result:
    sample = bench_load.Sample(elapsed_s=elapsed_s, model="m", variant="v", dimensions=DIMS)
    for latency in latencies_ms:
        sample.record(latency / 1000, 1, "OK")
    common = {"concurrency": 1, "texts_per_call": 1, "length": [8, 48], "duration_s": 1.0}
    common |= {"requests": None, "warmup_s": 0.0, "seed": 0, "rounds": 3, "target": "t", "model": ""}
    return bench_report.summarize(sample, mode, {**common, **settings})


def test_rounds_report_medians_and_spread() -> None:
    rounds = []
    for tps, p50, peer_tps in ((100, 10.0, 50), (130, 8.0, 65), (70, 14.0, 70)):
        served = _result("served", [p50] * tps, 1.0, protocol="grpc")
        ceiling = _result(
            "in-process", [p50 / 2] * (2 * tps), 1.0, batch_size=1, backend="torch", backends=["torch"]
        )
        peer = _result("peer", [p50 * 2] * peer_tps, 1.0, protocol="http")
        served |= {"ceiling": ceiling, "ratio": bench_report.ratios(served, ceiling)}
        served |= {"peer": peer, "vs_peer": bench_report.ratios(served, peer)}
        rounds.append(served)
    out = bench_report.combine_rounds(rounds)
    assert out["throughput"]["texts_per_s"] == 100 and out["spread"]["throughput"]["texts_per_s"] == [70, 130]
    assert out["latency_ms"]["p50"] == 10 and out["spread"]["latency_ms"]["p50"] == [8, 14]
    assert (out["calls"], out["texts"], out["elapsed_s"]) == (300, 300, 3.0)  # counts add up
    assert out["ratio"]["texts_per_s"] == 0.5 and out["spread"]["ratio"]["texts_per_s"] == [0.5, 0.5]
    # The ratio to the peer is each round's own (2.0, 2.0, 1.0), not a ratio of medians (100/65).
    assert out["vs_peer"]["texts_per_s"] == 2.0 and out["spread"]["vs_peer"]["texts_per_s"] == [1.0, 2.0]
    assert out["peer"]["throughput"]["texts_per_s"] == 65 and len(out["peer"]["rounds"]) == 3
    assert out["ceiling"]["throughput"]["texts_per_s"] == 200
    # Every round's raw numbers stay, without repeating the nested records.
    assert [r["throughput"]["texts_per_s"] for r in out["rounds"]] == [100, 130, 70]
    assert all("peer" not in r and "ceiling" not in r for r in out["rounds"])
    json.dumps(out)
    lines = bench_report.format_report([out]).splitlines()
    assert lines[0].endswith("rounds 3: median (min..max)")
    served = next(line for line in lines if line.startswith("served"))
    assert "100.0 (70.0..130.0)" in served and "10.00 (8.00..14.00)" in served and "50% (50%..50%)" in served
    assert served.endswith("200% (100%..200%)")
    assert any(line.startswith("peer ") and "65.0 (50.0..70.0)" in line for line in lines)
    assert "concurrency 1: pool/peer (t, model ): texts/s 2.00 (1.00..2.00)x" in "\n".join(lines)
    assert bench_report.combine_rounds(rounds[:1]) is rounds[0]  # one round: the record as it was


@asynccontextmanager
async def openai_stub(seen: list[tuple[str, dict[str, Any]]]) -> AsyncIterator[str]:
    """A tiny OpenAI-style embeddings server (float lists, as Infinity and TEI answer)."""
    from aiohttp import web

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.path, body))
        rows = [
            {"object": "embedding", "index": i, "embedding": [0.5] * DIMS} for i in range(len(body["input"]))
        ]
        return web.json_response({"object": "list", "model": body["model"], "data": rows})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def test_peer_runs_the_same_load(pool: Pool, serve: Serve, capsys: Capsys) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    url = serve(openai_stub(seen))
    args = ["--target", pool.target, "bench", "--peer-url", url, "--texts-per-call", "3"]
    data = bench(capsys, *args, "--requests", "5", "--warmup", "0", "--json")
    peer = data["peer"]
    assert peer["mode"] == "peer" and (peer["ok_calls"], peer["texts"], peer["dimensions"]) == (5, 15, DIMS)
    assert peer["settings"]["target"] == url + "/embeddings"
    # The plain OpenAI body, the model the pool answered with (no --model, no --peer-model).
    assert {path for path, _ in seen} == {"/v1/embeddings"}
    assert all(set(body) == {"model", "input"} and body["model"] == "fake" for _, body in seen)
    assert [len(body["input"]) for _, body in seen] == [1] + [3] * 5  # the probe, then the load
    assert data["vs_peer"]["texts_per_s"] == pytest.approx(
        data["throughput"]["texts_per_s"] / peer["throughput"]["texts_per_s"], rel=1e-2
    )
    seen.clear()
    assert main([*args, "--peer-model", "BAAI/bge-small-en-v1.5", "--requests", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert {body["model"] for _, body in seen} == {"BAAI/bge-small-en-v1.5"}
    assert any(line.startswith("peer ") for line in out.splitlines()) and "pool/peer (" in out


def test_the_pools_http_front_as_peer(pool: Pool, serve: Serve, capsys: Capsys) -> None:
    url = serve(http_front(pool.core))
    # Short texts: the peer's body asks for no truncation, and the fake model takes 32 tokens.
    args = ["--target", pool.target, "bench", "--peer-url", url + "/v1", "--length", "3:9"]
    args += ["--requests", "4", "--warmup", "0"]
    data = bench(capsys, *args, "--json")
    assert (data["peer"]["ok_calls"], data["peer"]["model"], data["peer"]["dimensions"]) == (4, "fake", DIMS)


def test_peer_unreachable_says_so(pool: Pool, capsys: Capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert (
        main(["--target", pool.target, "bench", "--peer-url", url, "--requests", "2", "--warmup", "0"]) == 1
    )
    assert f"cannot reach the peer at {url}/embeddings" in capsys.readouterr().err


def test_rounds_run_ceiling_pool_peer_per_load(
    pool: Pool, serve: Serve, fake_models: FakeModels, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    log: list[str] = []
    fake_models.log = log
    run_served, run_peer = bench_load.run_served, bench_load.run_peer_http

    async def served(settings: bench_load.LoadSettings) -> bench_load.Sample:
        log.append(f"pool c{settings.concurrency}")
        return await run_served(settings)

    async def peer(settings: bench_load.LoadSettings, url: str, model: str) -> bench_load.Sample:
        log.append(f"peer c{settings.concurrency}")
        return await run_peer(settings, url, model)

    monkeypatch.setattr(bench_load, "run_served", served)
    monkeypatch.setattr(bench_load, "run_peer_http", peer)
    monkeypatch.setattr(bench_load, "batch1_p50_ms", lambda model, texts: 1.0)
    url = serve(openai_stub([]))
    args = ["--target", pool.target, "bench", "--ceiling", "--ceiling-batch", "offered", "--rounds", "2"]
    args += ["--ceiling-backend", "onnx,torch", "--concurrency", "1,2", "--peer-url", url]
    data = bench(capsys, *args, "--requests", "2", "--warmup", "0", "--json")
    # Consecutive encode() calls of one ceiling run are one step.
    steps = [step for i, step in enumerate(log) if i == 0 or step != log[i - 1]]
    one_round = ["ceiling/onnx", "ceiling/torch", "pool c1", "peer c1"]
    one_round += ["ceiling/onnx", "ceiling/torch", "pool c2", "peer c2"]
    assert steps == one_round * 2
    assert fake_models.loads == ["onnx", "torch"]
    for result in data:
        assert len(result["rounds"]) == 2 and len(result["peer"]["rounds"]) == 2
        assert len(result["ceilings"]["onnx"]["rounds"]) == 2 and result["settings"]["rounds"] == 2
        raw = [r["throughput"]["texts_per_s"] for r in result["rounds"]]
        assert result["spread"]["throughput"]["texts_per_s"] == [min(raw), max(raw)]
