#!/usr/bin/env bash
# Reproduce the BENCHMARKS loads against a running pool at $EMBEDPOOL_TARGET, each with its
# in-process ceiling (the same model with sentence-transformers in the bench process), in
# BENCH_ROUNDS interleaved rounds (ceiling, pool, peer per load; the report gives medians and
# min..max, since one run on a shared machine drifts by tens of percent):
#
#   (a) concurrency 1,  1 text/call     -> bench-out/a_c1_k1.json
#   (b) concurrency 1, 32 texts/call    -> bench-out/b_c1_k32.json
#   (c) concurrency 32, 1 text/call     -> bench-out/c_c32_k1.json
#   (d) concurrency 1, 2048 texts/call  -> bench-out/d_c1_k2048.json
#     (bulk indexing; its ceiling is one encode() of the whole list, which the library sorts
#     by length and cuts into batches of 32: the best it does with that list)
#   a concurrency sweep, 1 text/call    -> bench-out/sweep.json and bench-out/concurrency.png
#     (its ceiling encodes batches of concurrency x 1 texts: what perfect server-side
#     batching of that load could reach)
#
#   EMBEDPOOL_TARGET=localhost:50051 scripts/bench_pool.sh
#   EMBEDPOOL_TARGET=localhost:50051 BENCH_CEILING_BACKEND=torch,onnx,openvino \
#     BENCH_PEER_URL=http://localhost:7997 scripts/bench_pool.sh
#
# Settings (environment): BENCH_DURATION (s per load, default 20), BENCH_BULK_DURATION (s for
# load (d), default 15: one call takes ~10 s on 2 cores), BENCH_WARMUP (3), BENCH_ROUNDS (3),
# BENCH_SWEEP (1,2,4,8,16,32), BENCH_SWEEP_DURATION (10), BENCH_LENGTH (8:48 words),
# BENCH_MODEL (default: the pool's default model; the ceiling always loads the bundled
# all-MiniLM-L6-v2), BENCH_CEILING_BACKEND (torch, onnx, openvino, openvino-bf16 or a comma list: each
# measured, the fastest named best in-process; default torch), BENCH_PEER_URL (another
# OpenAI-style embeddings server, e.g. Infinity or TEI, run with the same loads; optional),
# BENCH_PEER_MODEL (the model name sent to it), BENCH_OUT (bench-out), EMBEDPOOL_METRICS_URL
# (Ray's metrics export host:port, for the pool's own batch sizes; optional), EMBEDPOOL_TOKEN,
# BENCH_PROTOCOL (grpc, http or grpc,http: the loads over the OpenAI-compatible HTTP front
# too, beside gRPC in the same run; default grpc), EMBEDPOOL_HTTP_URL (default
# http://<target host>:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${EMBEDPOOL_TARGET:?set EMBEDPOOL_TARGET to the host:port of a running pool}"
export EMBEDPOOL_TARGET

OUT=${BENCH_OUT:-bench-out}
DURATION=${BENCH_DURATION:-20}
BULK_DURATION=${BENCH_BULK_DURATION:-15}
WARMUP=${BENCH_WARMUP:-3}
SWEEP=${BENCH_SWEEP:-1,2,4,8,16,32}
SWEEP_DURATION=${BENCH_SWEEP_DURATION:-10}
LENGTH=${BENCH_LENGTH:-8:48}
if [ -x .venv/bin/embedpool ]; then EMBEDPOOL=.venv/bin/embedpool PYTHON=.venv/bin/python; else
  EMBEDPOOL=embedpool PYTHON=python3
fi

EXTRA=(--length "$LENGTH" --warmup "$WARMUP" --ceiling --json --rounds "${BENCH_ROUNDS:-3}")
EXTRA+=(--ceiling-backend "${BENCH_CEILING_BACKEND:-torch}")
[ -n "${BENCH_MODEL:-}" ] && EXTRA+=(--model "$BENCH_MODEL")
[ -n "${EMBEDPOOL_METRICS_URL:-}" ] && EXTRA+=(--metrics-url "$EMBEDPOOL_METRICS_URL")
EXTRA+=(--protocol "${BENCH_PROTOCOL:-grpc}")
[ -n "${EMBEDPOOL_HTTP_URL:-}" ] && EXTRA+=(--http-url "$EMBEDPOOL_HTTP_URL")
[ -n "${BENCH_PEER_URL:-}" ] && EXTRA+=(--peer-url "$BENCH_PEER_URL")
[ -n "${BENCH_PEER_MODEL:-}" ] && EXTRA+=(--peer-model "$BENCH_PEER_MODEL")

mkdir -p "$OUT"
STATUS=0
bench() {  # a load where no call succeeded still writes its report; the script goes on
  local name=$1
  shift
  echo "== $name: $*" >&2
  "$EMBEDPOOL" bench "$@" "${EXTRA[@]}" >"$OUT/$name.json" || STATUS=1
}

bench a_c1_k1 --concurrency 1 --texts-per-call 1 --duration "$DURATION"
bench b_c1_k32 --concurrency 1 --texts-per-call 32 --duration "$DURATION"
bench c_c32_k1 --concurrency 32 --texts-per-call 1 --duration "$DURATION"
bench d_c1_k2048 --concurrency 1 --texts-per-call 2048 --duration "$BULK_DURATION" --ceiling-batch whole
bench sweep --concurrency "$SWEEP" --texts-per-call 1 --duration "$SWEEP_DURATION" \
  --ceiling-batch offered --plot "$OUT/concurrency.png"

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

from embedpool.bench.report import format_report

out = Path(sys.argv[1])
for name in ("a_c1_k1", "b_c1_k32", "c_c32_k1", "d_c1_k2048", "sweep"):
    try:
        data = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        print(f"\n== {name}: no report (see the errors above)")
        continue
    print(f"\n== {name}")
    print(format_report(data if isinstance(data, list) else [data]))
print(f"\nJSON in {out}/, plot {out}/concurrency.png")
EOF
exit "$STATUS"
