"""The committed TypeScript client in tests/clients/node/gen/ matches what buf.gen.yaml makes now.

Runs `buf generate` (the npm-installed buf with the local protoc-gen-es from
node_modules, so no network) into a temporary directory and compares the result
with the committed files, byte for byte. Fix a failure with `npm run generate:ts`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.buf_drift import BUF, assert_up_to_date


@pytest.mark.skipif(
    not BUF.exists(), reason="node_modules/.bin/buf is missing: run `npm ci` at the repo root"
)
def test_generated_ts_is_up_to_date(tmp_path: Path) -> None:
    assert_up_to_date("buf.gen.yaml", Path("tests/clients/node/gen"), "npm run generate:ts", tmp_path)
