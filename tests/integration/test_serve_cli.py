"""`embedpool serve` on the bundled default model: starts, answers, drains on SIGTERM, leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from .conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.own_cluster]
BIN = Path(sys.executable).parent


def test_serve_starts_the_default_model_and_sigterm_leaves_no_ray_process() -> None:
    port, http_port = free_port(), free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            *(str(BIN / "embedpool"), "serve", "--port", str(port), "--http-port", str(http_port)),
            *("--host", "127.0.0.1", "--num-cpus", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "OpenAI-compatible HTTP on" in line:  # printed right after "embedpool serving"
                break
        assert any("embedpool serving all-minilm-l6-v2 on 127.0.0.1:" in ln for ln in lines), "".join(lines)
        # Read here, not from communicate() below: with a timeout it reads the pipe itself and
        # skips what readline() already buffered.
        http_line = f"OpenAI-compatible HTTP on http://127.0.0.1:{http_port}/v1/embeddings"
        assert any(http_line in ln for ln in lines), "".join(lines)
        started = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert started, "serve started no Ray processes"

        def cli(*args: str) -> str:
            return subprocess.run(
                [str(BIN / "embedpool"), "--target", f"127.0.0.1:{port}", *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout

        assert "384" in cli("embed", "hello")
        # The default catalogue's backend auto: the replica measured this CPU and says what it chose.
        models = json.loads(cli("models", "--json"))
        (variant,) = models[0]["variants"]
        assert variant["name"] == "cpu" and variant["backend"] in ("torch", "onnx", "openvino"), variant
        winner = variant["backend_reason"].removeprefix("fastest exact backend here: ").split()[0]
        assert winner in ("torch", "onnx", "openvino", "openvino-bf16"), variant
        assert (variant["backend"], variant["dtype"]) == (
            winner.split("-")[0],
            "bfloat16" if winner == "openvino-bf16" else "float32",
        ), variant
        assert variant["min_cosine_to_fp32"] >= 0.9999
        # The OpenAI-compatible front of the same pool, as the README's curl line calls it.
        body = {"model": "all-minilm-l6-v2", "input": ["hello", "world"], "encoding_format": "float"}
        answer = httpx.post(f"http://127.0.0.1:{http_port}/v1/embeddings", json=body, timeout=60).json()
        assert [len(d["embedding"]) for d in answer["data"]] == [384, 384]

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, "".join(lines) + rest
        assert "stopped" in rest
        time.sleep(2)
        alive = [
            pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
        ]
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
