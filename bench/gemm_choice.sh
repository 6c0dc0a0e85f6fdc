#!/usr/bin/env bash
# `bench train` with each GEMM choice, alternating, ROUNDS rounds: BERTUNE_GEMM=openblas (one
# library for every shape) against auto (the fastest provider per shape class, measured once
# and cached). One JSON object per run on stdout, with "gemm" and "round" added; the load
# average before each run on stderr.
#   bench/gemm_choice.sh CONFIG [build/bertune]     e.g. ../shared/models/klue-bert-base/config.json
# ROUNDS (3), STEPS (6), WARMUP (2), THREADS (2), CHOICES ("openblas auto").
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: bench/gemm_choice.sh CONFIG [BIN]}
BIN=${2:-build/bertune}
SHARED=${BERTUNE_SHARED:-../shared}
ROUNDS=${ROUNDS:-3}
CHOICES=${CHOICES:-openblas auto}
for round in $(seq 1 "$ROUNDS"); do
  for gemm in $CHOICES; do
    echo "[round $round $gemm, load $(cut -d' ' -f1-3 /proc/loadavg)]" >&2
    BERTUNE_GEMM=$gemm "$BIN" bench train --model-config "$CONFIG" --tokenizer "$SHARED/models/klue-bert-base" \
      --train-file "$SHARED/data/nsmc/ratings_train.txt" --per-device-train-batch-size 32 --padding packed \
      --max-length 128 --threads "${THREADS:-2}" --steps "${STEPS:-6}" --warmup "${WARMUP:-2}" --profile --json |
      python3 -c "import json,sys; j=[json.loads(l) for l in sys.stdin if l.startswith('{')][-1]; j.update(gemm='$gemm', round=$round); print(json.dumps(j))"
  done
done
