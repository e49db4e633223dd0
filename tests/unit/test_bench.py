"""`embedpool bench` against the fake pool (conftest's `target` and `pool` fixtures): counts,
errors, sweeps, plot, metrics, ceiling.

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
from tests.unit.fake_backend import DIMS

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


def test_pool_metrics_unreachable_is_reported(target: str, pool: Pool, capsys: Capsys) -> None:
    args = ["--target", target, "bench", "--requests", "3", "--warmup", "0", "--metrics-url", "127.0.0.1:1"]
    data = bench(capsys, *args, "--json")
    assert data["ok_calls"] == 3 and "cannot scrape" in data["pool_metrics"]["error"]


# -- the ceiling, with a stand-in for the model ----------------------------------------------------


class FakeModel:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, texts: list[str], **kwargs: Any) -> None:
        assert kwargs["batch_size"] == len(texts) and kwargs["normalize_embeddings"]
        self.batches.append(len(texts))
        time.sleep(0.0005)

    def get_sentence_embedding_dimension(self) -> int:
        return DIMS


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    model = FakeModel()
    monkeypatch.setattr(bench_load, "load_model", lambda path=None, threads=None: model)
    return model


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
