#!/usr/bin/env bash
# Data-parallel training on one machine: NP processes under mpirun (1 thread each) against one
# process with NP threads, the same global batch and steps, alternated ROUNDS times. Both report
# the training loop's own train_runtime / steps (log.jsonl), start-up and loading excluded.
#
#   bench/mpi_vs_threads.sh     environment: ROUNDS (3), STEPS (20), NP (2), MODEL (models/nsmc-bert-small),
#                               DATA (../shared/data/nsmc/ratings_train.txt, its first 2,000 reviews),
#                               BATCH (32, global), MAX_LENGTH (64), MPIRUN_ARGS (--allow-run-as-root --oversubscribe),
#                               BUCKETS (unset), ONE (1)
# Prints one line per round and the ratio (one process / NP processes) of the medians: above 1,
# the processes are faster. The processes sum their gradients once after the backward
# (--ddp-bucket-cap-mb 0). With BUCKETS=N (MiB) each round also runs the NP processes with
# --ddp-bucket-cap-mb N (the reduction in buckets overlapping the backward), and the script
# prints the ratio of that to the single reduction: above 1, the buckets are faster; ONE=0 then
# leaves out the one process.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-20} NP=${NP:-2} MODEL=${MODEL:-models/nsmc-bert-small}
DATA=${DATA:-../shared/data/nsmc/ratings_train.txt} BATCH=${BATCH:-32} MAX_LENGTH=${MAX_LENGTH:-64}
BERTUNE=${BERTUNE:-build/bertune} BUCKETS=${BUCKETS:-} ONE=${ONE:-1}
[[ -n $BUCKETS || $ONE == 1 ]] || { echo "ONE=0 needs BUCKETS" >&2; exit 1; }
read -r -a MPIRUN_ARGS <<< "${MPIRUN_ARGS:---allow-run-as-root --oversubscribe}"
command -v mpirun > /dev/null || { echo "mpirun not found (Debian: openmpi-bin)" >&2; exit 1; }
(( BATCH % NP == 0 )) || { echo "BATCH $BATCH is not a multiple of NP $NP" >&2; exit 1; }
source bench/step_common.sh
run() {  # run NAME PROCESSES THREADS [BUCKET_CAP_MB]
  local opts=(train --model "$MODEL" --train-file "$work/train.tsv" --per-device-train-batch-size $((BATCH / $2))
              --max-length "$MAX_LENGTH" --max-steps "$STEPS" --threads "$3" --save-strategy no
              --ddp-bucket-cap-mb "${4:-0}" --output-dir "$work/$1" --overwrite-output-dir)
  if (( $2 == 1 )); then "$BERTUNE" "${opts[@]}" > "$work/$1.log" 2>&1
  else mpirun "${MPIRUN_ARGS[@]}" -np "$2" "$BERTUNE" "${opts[@]}" > "$work/$1.log" 2>&1; fi
  step_ms "$work/$1/log.jsonl"
}

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# $MODEL, global batch $BATCH, max length $MAX_LENGTH, $STEPS steps; ms per step"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
one=() many=() buckets=()
for r in $(seq "$ROUNDS"); do
  # With BUCKETS, the two ways of the processes take turns going first.
  if [[ -n $BUCKETS ]] && (( r % 2 == 0 )); then buckets+=("$(run buckets "$NP" 1 "$BUCKETS")"); fi
  if [[ $ONE == 1 ]]; then one+=("$(run one 1 "$NP")"); line="round $r  1 process x $NP threads ${one[-1]}  "
  else line="round $r  "; fi
  many+=("$(run many "$NP" 1)")
  line+="$NP processes x 1 thread ${many[-1]}"
  if [[ -n $BUCKETS ]]; then
    if (( r % 2 == 1 )); then buckets+=("$(run buckets "$NP" 1 "$BUCKETS")"); fi
    line+="  with $BUCKETS MiB buckets ${buckets[-1]}  ratio $(python3 -c "print(f'{${many[-1]} / ${buckets[-1]}:.3f}')")"
  fi
  echo "$line"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $ONE == 1 ]]; then
  median_ratio "${one[*]}" "${many[*]}" "1 process" "$NP processes" "speed of the processes relative to one"
fi
if [[ -n $BUCKETS ]]; then
  median_ratio "${many[*]}" "${buckets[*]}" "one reduction" "$BUCKETS MiB buckets" "speed of the buckets relative to one reduction"
fi
