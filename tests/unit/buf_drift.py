"""One check for every language buf generates: a fresh `buf generate` equals the committed code."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _files(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def assert_up_to_date(template: str, gen: Path, fix: str, tmp_path: Path) -> None:
    """Generate with `template` into tmp_path and compare `gen` (the template's out, relative to
    the repo root) with the committed copy, byte for byte; `fix` is the command that updates it."""
    # --output is the base directory for the plugins' out paths: the fresh copy lands in
    # tmp_path / gen, and the committed directory is left alone.
    run = subprocess.run(
        [str(BUF), "generate", "--template", template, "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"buf generate failed:\n{run.stdout}\n{run.stderr}"
    fresh = _files(tmp_path / gen)
    assert fresh, "buf generate wrote nothing"
    committed = _files(ROOT / gen)
    assert sorted(fresh) == sorted(committed), (
        f"generated file set differs from {gen}/ (generated {sorted(fresh)}, committed {sorted(committed)});"
        f" run `{fix}`"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{gen}/ is out of date for {stale}; run `{fix}`"
