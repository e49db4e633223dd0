"""The embedpool command line, against the fake pool."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedpool.cli import main
from embedpool.server.errors import InvalidArgument
from tests.unit.conftest import Pool, StartPool
from tests.unit.fake_backend import DIMS, count_tokens, expected

Capsys = pytest.CaptureFixture[str]


def test_embed_summary(target: str, pool: Pool, capsys: Capsys) -> None:
    assert main(["--target", target, "embed", "hello world", "second text"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"model fake (custom-cpu): 2 vector(s) of {DIMS} dimensions")
    first = expected(["hello world"])[0]
    assert out[1].startswith(f"[0] dims={DIMS} norm=1.0000 [{first[0]:+.4f}, ")
    assert out[1].endswith('"hello world"')
    assert out[2].startswith("[1] ")


def test_embed_json_query_and_dimensions(target: str, pool: Pool, capsys: Capsys) -> None:
    assert main(["embed", "--target", target, "hi", "--query", "--dimensions", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "fake" and data["dimensions"] == 8
    np.testing.assert_allclose(data["embeddings"], expected(["hi"], input_type="query", dimensions=8))


def test_similarity_ranking(target: str, pool: Pool, capsys: Capsys) -> None:
    docs = ["cats purr", "markets fell", "kittens nap"]
    assert main(["--target", target, "similarity", "cat", *docs, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["RANK", "SCORE", "DOC", "TEXT"]
    assert len(lines) == 4 and lines[2].split()[0] == "1" and lines[3].split()[0] == "2"
    assert main(["--target", target, "similarity", "cat", *docs, "--mode", "euclidean", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "euclidean" and len(data["results"]) == 3
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    assert {r["document"] for r in data["results"]} == set(docs)


def test_models(target: str, pool: Pool, capsys: Capsys) -> None:
    assert main(["--target", target, "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "DIMS"]
    assert lines[1].startswith("fake *") and "custom-cpu* (custom), onnx-cpu (onnx)" in lines[1]
    assert main(["--target", target, "models", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)
    assert model["name"] == "fake" and model["limits"]["max_inputs_per_request"] == 7


def test_tokens(target: str, pool: Pool, capsys: Capsys) -> None:
    assert main(["--target", target, "tokens", "one two three", "four"]) == 0
    counts = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert counts == [count_tokens("one two three"), count_tokens("four")]


def test_error_exit_code(target: str, pool: Pool, capsys: Capsys) -> None:
    pool.backend.fail_next(InvalidArgument("input 0 is bad"))
    assert main(["--target", target, "embed", "x"]) == 1
    assert capsys.readouterr().err.strip() == "error: INVALID_ARGUMENT: input 0 is bad"
    assert main(["--target", target, "embed", "--model", "nope", "x"]) == 1
    assert capsys.readouterr().err.strip() == "error: NOT_FOUND: unknown model 'nope'; available: fake"


def test_token_option(start_pool: StartPool, capsys: Capsys) -> None:
    pool = start_pool(tokens=["t0k"])
    assert main(["--target", pool.target, "models"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main(["--target", pool.target, "--token", "t0k", "models"]) == 0
    assert [md.get("authorization") for md in pool.metadata] == [None, "Bearer t0k"]


def test_help_and_usage(capsys: Capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("embed", "similarity", "models", "tokens", "serve", "bench"):
        assert command in out
    assert main([]) == 2
    assert main(["embed", "x", "--bogus"]) == 2


def test_server_commands_are_lazy(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import embedpool.cli as cli

    missing = EntryPoint("bench", "embedpool.no_such_module", cli.COMMAND_GROUP)
    monkeypatch.setattr(cli, "plugin_commands", lambda: {"bench": missing})
    assert main(["bench", "--anything", "1"]) == 1
    assert "install 'embedpool[bench]'" in capsys.readouterr().err


def test_serve_and_bench_come_as_entry_points() -> None:
    import embedpool.cli as cli

    found = {name: entry.value for name, entry in cli.plugin_commands().items()}
    assert found == {"serve": "embedpool.server.serving.cli", "bench": "embedpool.bench.cli"}
