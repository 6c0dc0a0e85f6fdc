#!/usr/bin/env bash
# Data-parallel training on one machine: NP processes under mpirun (1 thread each) against one
# process with NP threads, the same global batch and steps, alternated ROUNDS times. Both report
# the training loop's own train_runtime / steps (log.jsonl), start-up and loading excluded.
#
#   bench/mpi_vs_threads.sh     environment: ROUNDS (3), STEPS (20), NP (2), MODEL (models/nsmc-bert-small),
#                               DATA (../shared/data/nsmc/ratings_train.txt, its first 2,000 reviews),
#                               BATCH (32, global), MAX_LENGTH (64), MPIRUN_ARGS (--allow-run-as-root --oversubscribe)
# Prints one line per round and the ratio (one process / NP processes) of the medians: above 1,
# the processes are faster.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-20} NP=${NP:-2} MODEL=${MODEL:-models/nsmc-bert-small}
DATA=${DATA:-../shared/data/nsmc/ratings_train.txt} BATCH=${BATCH:-32} MAX_LENGTH=${MAX_LENGTH:-64}
BERTUNE=${BERTUNE:-build/bertune}
read -r -a MPIRUN_ARGS <<< "${MPIRUN_ARGS:---allow-run-as-root --oversubscribe}"
command -v mpirun > /dev/null || { echo "mpirun not found (Debian: openmpi-bin)" >&2; exit 1; }
(( BATCH % NP == 0 )) || { echo "BATCH $BATCH is not a multiple of NP $NP" >&2; exit 1; }
source bench/step_common.sh
run() {  # run NAME PROCESSES THREADS
  local opts=(train --model "$MODEL" --train-file "$work/train.tsv" --per-device-train-batch-size $((BATCH / $2))
              --max-length "$MAX_LENGTH" --max-steps "$STEPS" --threads "$3" --save-strategy no
              --output-dir "$work/$1" --overwrite-output-dir)
  if (( $2 == 1 )); then "$BERTUNE" "${opts[@]}" > "$work/$1.log" 2>&1
  else mpirun "${MPIRUN_ARGS[@]}" -np "$2" "$BERTUNE" "${opts[@]}" > "$work/$1.log" 2>&1; fi
  step_ms "$work/$1/log.jsonl"
}

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# $MODEL, global batch $BATCH, max length $MAX_LENGTH, $STEPS steps; ms per step"
one=() many=()
for r in $(seq "$ROUNDS"); do
  one+=("$(run one 1 "$NP")") many+=("$(run many "$NP" 1)")
  echo "round $r  1 process x $NP threads ${one[-1]}  $NP processes x 1 thread ${many[-1]}"
done
median_ratio "${one[*]}" "${many[*]}" "1 process" "$NP processes" "speed of the processes relative to one"
