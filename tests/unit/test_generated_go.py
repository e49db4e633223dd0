"""The committed Go client in gen/go/ matches what buf.gen.go.yaml makes now.

Runs `buf generate --template buf.gen.go.yaml` with Debian's protoc-gen-go and
protoc-gen-go-grpc (local plugins, no network) into a temporary directory and compares
the result with the committed files, byte for byte. Fix a failure with `npm run generate:go`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.buf_drift import BUF, ROOT, assert_up_to_date

PLUGINS = ("protoc-gen-go", "protoc-gen-go-grpc")


@pytest.mark.skipif(not BUF.exists(), reason="node_modules/.bin/buf is missing: run `npm ci`")
@pytest.mark.skipif(
    any(shutil.which(p) is None for p in PLUGINS),
    reason="protoc-gen-go / protoc-gen-go-grpc are missing: scripts/install.sh installs Debian's "
    "packages where it may install system packages (root with apt)",
)
def test_generated_go_is_up_to_date(tmp_path: Path) -> None:
    assert_up_to_date("buf.gen.go.yaml", Path("gen/go"), "npm run generate:go", tmp_path)


def test_the_proto_names_its_go_package() -> None:
    proto = (ROOT / "proto/embedpool/v1/embedding_service.proto").read_text()
    assert 'option go_package = "github.com/embedpool/embedpool/gen/go/embedpool/v1;embedpoolv1";' in proto
