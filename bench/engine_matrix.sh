#!/usr/bin/env bash
# Runs every training-speed figure of docs/performance.md and appends one JSON object per
# line to $OUT (default bench_engine_results.jsonl): GEMM ceiling, then
# BERT-base and the small config, each packed / longest + group-by-length /
# max_length 128, batch 32, 2 threads, repeated runs for the spread.
#   bench/engine_matrix.sh [build/bertune]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/bertune}
OUT=${OUT:-bench_engine_results.jsonl}
SHARED=${BERTUNE_SHARED:-../shared}
DATA=$SHARED/data/nsmc/ratings_train.txt
TOK=$SHARED/models/klue-bert-base
BASE=$SHARED/models/klue-bert-base/config.json
SMALL=$SHARED/models/bert-small-klue/config.json
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-3}

note() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

note "gemm"
"$BIN" bench gemm --threads "$THREADS" --repeat 5 --json >>"$OUT"
for cfg in SMALL BASE; do
  conf=${!cfg}
  # max_length 128 steps cost ~5x a packed step: fewer of them.
  if [ "$cfg" = BASE ]; then steps=${BASE_STEPS:-10}; long_steps=${BASE_LONG_STEPS:-2}; warm=${BASE_WARMUP:-2}
  else steps=${SMALL_STEPS:-20}; long_steps=${SMALL_LONG_STEPS:-5}; warm=3; fi
  for mode in "packed" "longest --group-by-length" "max_length"; do
    s=$steps; [ "$mode" = max_length ] && s=$long_steps
    note "$cfg $mode steps=$s"
    # `bertune train`'s own step on its own batches (train's flags and defaults: adamw_hf,
    # linear schedule, clip 1.0), NSMC train less nothing, seed 42.
    "$BIN" bench train --model-config "$conf" --tokenizer "$TOK" --train-file "$DATA" \
      --per-device-train-batch-size 32 --padding $mode --steps "$s" --warmup "$warm" --threads "$THREADS" \
      --max-length 128 --repeat "$REPEAT" --profile --json >>"$OUT"
    echo "{\"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$OUT"
  done
done
note "done: $OUT"
