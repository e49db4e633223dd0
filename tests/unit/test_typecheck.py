"""mypy --strict over the whole distribution (scripts/typecheck.py) stays clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_passes() -> None:
    # Incremental: mypy keeps .mypy_cache/ in the repo root (gitignored), so reruns are fast.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "typecheck.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}\n{proc.stderr}"
