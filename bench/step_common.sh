# Sourced by bench/python_vs_cli.sh and bench/mpi_vs_threads.sh: a work folder holding the
# first 2,000 reviews of DATA as train.tsv, the per-step time a run logged, and the ratio of
# two series' medians with its range.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -2001 "$DATA" > "$work/train.tsv"

# step_ms LOG_JSONL: the training loop's own train_runtime / steps, in milliseconds.
step_ms() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
final = [r for r in rows if "train_runtime" in r][-1]
print(f"{1000 * final['train_runtime'] / final['step']:.1f}")
PY
}

# median_ratio "A..." "B..." LABEL_A LABEL_B TEXT: median(A) / median(B) and the range over the runs.
median_ratio() {
  python3 - "$@" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
print(f"median {sys.argv[3]} {statistics.median(a):.1f} ms, {sys.argv[4]} {statistics.median(b):.1f} ms: "
      f"{sys.argv[5]} = {statistics.median(a) / statistics.median(b):.3f} (range {min(a) / max(b):.3f}-{max(a) / min(b):.3f})")
PY
}
