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
# The LlamaIndex and LangChain drop-ins (integrations/), each on the thin client; the
# frameworks' test kits came with the dev extra. The same constraints keep torch the CPU wheel.
.venv/bin/python -m pip install -q -c constraints.txt -e integrations/llama-index -e integrations/langchain
# nginx (Debian's nginx-light) for the TLS front in deploy/tls/ and its test; only where this
# script may install system packages (root with apt). Elsewhere that test skips, saying why.
# Go, protoc-gen-go(-grpc) and grpc-go (Debian's packages: no Go module proxy is reachable) for the
# generated Go client, its drift test and its live test; the same condition, else those skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  command -v nginx >/dev/null 2>&1 || missing="$missing nginx-light"
  command -v go >/dev/null 2>&1 || missing="$missing golang-go"
  command -v protoc-gen-go >/dev/null 2>&1 || missing="$missing protoc-gen-go"
  command -v protoc-gen-go-grpc >/dev/null 2>&1 || missing="$missing protoc-gen-go-grpc"
  [ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing="$missing golang-google-grpc-dev golang-google-protobuf-dev"
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086  # one package name per word
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing) \
      || echo "could not install$missing: the TLS front and Go client tests will be skipped"
  fi
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "installed embedpool into .venv"
