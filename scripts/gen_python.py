"""Regenerate the Python code and stubs for proto/ into client/v1/ (or --out DIR).

Uses grpcio-tools' bundled protoc (no network, no system protoc) and
mypy-protobuf's grpc plugin for typed service stubs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("embedpool") / "v1"
HEADER = "# Generated from proto/ by scripts/gen_python.py. Do not edit.\n"


def generate(out_dir: Path) -> list[Path]:
    """Write the generated files for every proto into out_dir; return their paths."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    plugin = shutil.which("protoc-gen-mypy_grpc") or str(Path(sys.executable).parent / "protoc-gen-mypy_grpc")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PACKAGE_DIR).iterdir()):
            dest = out_dir / src.name
            dest.write_text(HEADER + src.read_text())
            written.append(dest)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "client" / "v1")
    for path in generate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
