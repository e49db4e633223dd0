"""The committed generated code in client/v1/ matches what scripts/gen_python.py makes now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "client" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_python", ROOT / "scripts" / "gen_python.py")
    assert spec is not None and spec.loader is not None
    gen_python = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_python)
    written = gen_python.generate(tmp_path)
    assert written, "the generator wrote nothing"
    names = sorted(path.name for path in written)
    committed = sorted(
        p.name for p in COMMITTED.iterdir() if p.is_file() and p.name not in ("__init__.py", "py.typed")
    )
    assert names == committed, "generated file set differs; run scripts/gen_python.py"
    stale = [p.name for p in written if p.read_bytes() != (COMMITTED / p.name).read_bytes()]
    assert not stale, f"client/v1/ is out of date for {stale}; run scripts/gen_python.py"
