"""The generated TypeScript client (tests/clients/node/) against this session's pool.

Runs `npm run test:node` with EMBEDPOOL_TARGET pointing at the session's pool,
so the Node test uses it instead of starting a second one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from .conftest import ROOT, Pool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not on PATH"
    ),
    pytest.mark.skipif(
        not (ROOT / "node_modules" / ".bin" / "tsx").exists(),
        reason="node_modules is missing: run `npm ci` at the repo root",
    ),
]

TIMEOUT_S = 240


def test_node_client(pool: Pool) -> None:
    env = {**os.environ, "EMBEDPOOL_TARGET": pool.target}
    proc = subprocess.Popen(
        ["npm", "run", "--silent", "test:node"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a timeout can stop npm and the node under it
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"npm run test:node did not finish in {TIMEOUT_S} s:\n{output}")
    assert proc.returncode == 0, f"npm run test:node failed (exit {proc.returncode}):\n{output}"
