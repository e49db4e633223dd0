"""The generated Go client (gen/go/, tests/clients/go/) compiled and run against this session's pool.

Go and grpc-go come from Debian's packages (scripts/install.sh installs them where it may
install system packages); with no Go module proxy, `go test` runs in GOPATH mode over
/usr/share/gocode with gen/go linked in under the proto's go_package path. The bearer-token
check runs against a second front of the same pool with auth on (conftest's `auth_front`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from embedpool import EmbeddingClient

from .conftest import ROOT, AuthFront, Pool
from .test_frameworks import PLANETS

GOCODE = Path("/usr/share/gocode/src/google.golang.org/grpc")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("go") is None or not GOCODE.exists(),
        reason="Go and grpc-go are missing: scripts/install.sh installs Debian's golang-go and "
        "golang-google-grpc-dev where it may install system packages (root with apt)",
    ),
]
GO_PACKAGE = "github.com/embedpool/embedpool/gen"  # the proto's go_package, less /go/embedpool/v1


def test_go_client(pool: Pool, auth_front: AuthFront, tmp_path: Path) -> None:
    texts = [*PLANETS, "a short one", "ünïcödé and emoji 🙂"]
    with EmbeddingClient(target=pool.target, model="all-minilm-l6-v2", timeout=60) as client:
        vectors = client.embed(texts).embeddings
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"texts": texts, "vectors": vectors.tolist()}))
    gopath = tmp_path / "gopath"
    link = gopath / "src" / GO_PACKAGE
    link.parent.mkdir(parents=True)
    link.symlink_to(ROOT / "gen")
    env = {
        **os.environ,
        "GO111MODULE": "off",  # no module proxy: GOPATH mode over Debian's /usr/share/gocode
        "GOPATH": f"{gopath}:/usr/share/gocode",
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "",
        "EMBEDPOOL_TARGET": pool.target,
        "EMBEDPOOL_AUTH_TARGET": auth_front.target,
        "EMBEDPOOL_AUTH_TOKEN": auth_front.token,
        "EMBEDPOOL_EXPECTED": str(expected),
    }
    run = subprocess.run(
        ["go", "test", "-count=1", "-v", "."],
        cwd=ROOT / "tests" / "clients" / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    (tmp_path / "go-test.log").write_text(output)
    assert run.returncode == 0, output[-6000:]
    passed = {line.split()[2] for line in output.splitlines() if line.startswith("--- PASS")}
    assert len(passed) == 9, output[-3000:]
