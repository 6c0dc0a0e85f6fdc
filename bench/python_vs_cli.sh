#!/usr/bin/env bash
# Per-step time of a Trainer run from Python (`import bertune`) against `bertune train` with the
# same options, alternated ROUNDS times on one machine. Both run the same training loop, so the
# figure is its own train_runtime / steps (log.jsonl), start-up and model loading excluded.
#
#   bench/python_vs_cli.sh      environment: ROUNDS (3), STEPS (30), MODEL (models/nsmc-bert-small),
#                               DATA (../shared/data/nsmc/ratings_train.txt, its first 2,000 reviews),
#                               BATCH (16), MAX_LENGTH (64), THREADS (2), PYTHON (/usr/bin/python3)
# Prints one line per run and the ratio Python / CLI of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-30} MODEL=${MODEL:-models/nsmc-bert-small}
DATA=${DATA:-../shared/data/nsmc/ratings_train.txt} BATCH=${BATCH:-16} MAX_LENGTH=${MAX_LENGTH:-64}
THREADS=${THREADS:-2} PYTHON=${PYTHON:-/usr/bin/python3} BERTUNE=${BERTUNE:-build/bertune}
[ -d build/python/bertune ] || { echo "build/python/bertune: the Python module is not built" >&2; exit 1; }
source bench/step_common.sh
cli() {
  "$BERTUNE" train --model "$MODEL" --train-file "$work/train.tsv" --per-device-train-batch-size "$BATCH" \
    --max-length "$MAX_LENGTH" --max-steps "$STEPS" --threads "$THREADS" --save-strategy no \
    --output-dir "$work/cli" --overwrite-output-dir > "$work/cli.log" 2>&1
  step_ms "$work/cli/log.jsonl"
}
py() {
  PYTHONPATH=python:build/python "$PYTHON" - "$MODEL" "$work" "$BATCH" "$MAX_LENGTH" "$STEPS" "$THREADS" \
    > "$work/py.log" 2>&1 <<'EOF'
import sys
import bertune
model, work, batch, max_length, steps, threads = sys.argv[1:]
args = bertune.TrainingArguments(output_dir=f"{work}/py", per_device_train_batch_size=int(batch),
                                 max_length=int(max_length), max_steps=int(steps), threads=int(threads),
                                 save_strategy="no", overwrite_output_dir=True)
bertune.Trainer(model=model, args=args, train_dataset=f"{work}/train.tsv").train()
EOF
  step_ms "$work/py/log.jsonl"
}

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# $MODEL, batch $BATCH, max length $MAX_LENGTH, $STEPS steps, $THREADS threads; ms per step"
c=() p=()
for r in $(seq "$ROUNDS"); do
  c+=("$(cli)") p+=("$(py)")
  echo "round $r  cli ${c[-1]}  python ${p[-1]}"
done
median_ratio "${p[*]}" "${c[*]}" python cli "python / cli"
