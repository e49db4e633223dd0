"""The committed Go client in gen/go/ matches what buf.gen.go.yaml makes now.

Runs `buf generate --template buf.gen.go.yaml` with Debian's protoc-gen-go and
protoc-gen-go-grpc (local plugins, no network) into a temporary directory and compares
the result with the committed files, byte for byte. Fix a failure with `npm run generate:go`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = Path("gen/go")
BUF = ROOT / "node_modules" / ".bin" / "buf"
PLUGINS = ("protoc-gen-go", "protoc-gen-go-grpc")


def _files(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.mark.skipif(not BUF.exists(), reason="node_modules/.bin/buf is missing: run `npm ci`")
@pytest.mark.skipif(
    any(shutil.which(p) is None for p in PLUGINS),
    reason="protoc-gen-go / protoc-gen-go-grpc are missing: scripts/install.sh installs Debian's "
    "packages where it may install system packages (root with apt)",
)
def test_generated_go_is_up_to_date(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(BUF), "generate", "--template", "buf.gen.go.yaml", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"buf generate failed:\n{run.stdout}\n{run.stderr}"
    fresh, committed = _files(tmp_path / GEN), _files(ROOT / GEN)
    assert fresh and sorted(fresh) == sorted(committed), "run `npm run generate:go`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{GEN}/ is out of date for {stale}; run `npm run generate:go`"


def test_the_proto_names_its_go_package() -> None:
    proto = (ROOT / "proto/embedpool/v1/embedding_service.proto").read_text()
    assert 'option go_package = "github.com/embedpool/embedpool/gen/go/embedpool/v1;embedpoolv1";' in proto
