#!/usr/bin/env bash
# Install embedpool with the server and dev extras into ./.venv, plus the npm tooling (buf, Node client).
# torch comes first as the pinned CPU wheel; constraints.txt keeps every later resolve on it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "installed embedpool into .venv"
