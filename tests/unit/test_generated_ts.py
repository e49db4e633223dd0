"""The committed TypeScript client in tests/clients/node/gen/ matches what buf.gen.yaml makes now.

Runs `buf generate` (the npm-installed buf with the local protoc-gen-es from
node_modules, so no network) into a temporary directory and compares the result
with the committed files, byte for byte. Fix a failure with `npm run generate:ts`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = Path("tests/clients/node/gen")  # buf.gen.yaml's out, relative to the repo root
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _files(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.mark.skipif(
    not BUF.exists(), reason="node_modules/.bin/buf is missing: run `npm ci` at the repo root"
)
def test_generated_ts_is_up_to_date(tmp_path: Path) -> None:
    # --output is the base directory for the plugins' out paths: the fresh copy
    # lands in tmp_path / GEN, and the committed directory is left alone.
    run = subprocess.run(
        [str(BUF), "generate", "--template", "buf.gen.yaml", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"buf generate failed:\n{run.stdout}\n{run.stderr}"
    fresh = _files(tmp_path / GEN)
    assert fresh, "buf generate wrote nothing"
    committed = _files(ROOT / GEN)
    assert sorted(fresh) == sorted(committed), (
        f"generated file set differs from {GEN}/ (generated {sorted(fresh)}, committed {sorted(committed)});"
        " run `npm run generate:ts`"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{GEN}/ is out of date for {stale}; run `npm run generate:ts`"
