#!/usr/bin/env bash
# bertune eval against the CPU inference peer, side by side on the same CPU: docs/s on the
# first N_DOCS NSMC test reviews, R alternated rounds of:
#   the peer: ../shared/peer/cpu/hf_infer.py — Hugging Face transformers' own
#     BertForSequenceClassification, unmodified, on Debian's torch: fp32 and dynamic int8
#     (quantize_dynamic) in one process, each timed over its forward loop after a warm-up
#     (sorted by length, padded per batch, inference_mode); tokenization and loading excluded;
#   bertune eval fp32, bertune eval --int8 — its evaluation loop (tokenization and loading
#     excluded, as the peer's) and, beside it, the whole process (load, read, tokenize, eval).
# Then medians [min-max] and the ratios bertune/torch (fp32 against fp32; int8 against
# torch int8). First, a check that the peer computes what bertune computes: max |logit
# difference| of its fp32 logits against `bertune predict` on the same texts.
#
#   bench/infer_vs_torch.sh [MODEL_DIR | klue-base | small] [N_DOCS]
#     default klue-base: a random-weights klue/bert-base-shaped model (bench/random_bert.py,
#     made once into $WORK_DIR); small: the main job's shape (../shared/models/bert-small-klue);
#     MODEL_DIR: any fp32 classifier directory (e.g. runs/main/final), read only.
#     N_DOCS default 1000.
# Environment: BERTUNE (build/bertune), PYTHON (/usr/bin/python3), THREADS (2), BATCH (64), R (3),
# NICE (0), MAX_LENGTH (128), PEER_CACHE (the peer's transformers, ~/.cache/bertune-peer: see
# ../shared/peer/README.md), WORK_DIR (a temporary directory, removed at the end unless given;
# give one to keep the random model). The peer runs with OPENBLAS_CORETYPE=$PEER_CORETYPE
# (SkylakeX) OMP_WAIT_POLICY=PASSIVE (its README's setting); bertune with the caller's
# environment (export OPENBLAS_CORETYPE / BERTUNE_INT8_KERNEL to choose its fp32 GEMM / int8
# kernel). An AVX2-only CPU, emulated: ONEDNN_MAX_CPU_ISA=AVX2 (both sides' oneDNN)
# PEER_CORETYPE=Haswell OPENBLAS_CORETYPE=Haswell BERTUNE_INT8_KERNEL=avx2.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTUNE=${BERTUNE:-build/bertune}
PYTHON=${PYTHON:-/usr/bin/python3}  # Debian's, where python3-torch lives
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
R=${R:-3}
NICE=${NICE:-0}
MAX_LENGTH=${MAX_LENGTH:-128}
SHARED=${BERTUNE_SHARED:-../shared}
REVIEWS=${REVIEWS:-$SHARED/data/nsmc/ratings_test.txt}
model=${1:-klue-base}
n_docs=${2:-1000}
"$PYTHON" -c 'import torch, numpy' 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)" >&2; exit 1; }
[ -x "$BERTUNE" ] || { echo "$BERTUNE: not built" >&2; exit 1; }
if [ -n "${WORK_DIR:-}" ]; then work=$WORK_DIR; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
run() { nice -n "$NICE" "$@"; }
PEER=$SHARED/peer/cpu/hf_infer.py
[ -f "$PEER" ] || { echo "$PEER: missing (../shared/peer/README.md)" >&2; exit 1; }
PEER_CORETYPE=${PEER_CORETYPE:-SkylakeX}
peer() { nice -n "$NICE" env OPENBLAS_CORETYPE="$PEER_CORETYPE" OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$PEER" "$@"; }

case "$model" in
  klue-base|small)
    config=$SHARED/models/klue-bert-base/config.json
    [ "$model" = small ] && config=$SHARED/models/bert-small-klue/config.json
    dir=$work/random-$model
    [ -f "$dir/model.safetensors" ] || run "$PYTHON" bench/random_bert.py --config "$config" --output "$dir" >&2
    # bert-small-klue's directory has a config only: klue's tokenizer, as bertune's default
    model=$dir ;;
esac
[ -f "$model/config.json" ] || { echo "$model: no config.json" >&2; exit 1; }
tok_args=()
[ -f "$model/vocab.txt" ] && tok_args=(--tokenizer "$model")

# The same N reviews for everyone (header + the first N rows), their ids and labels for the peer.
docs=$work/docs.tsv
head -n $((n_docs + 1)) "$REVIEWS" >"$docs"
run "$BERTUNE" tokenize --input "$docs" --format tsv --max-length "$MAX_LENGTH" "${tok_args[@]}" \
  --threads "$THREADS" --output "$work/ids.jsonl"
tail -n +2 "$docs" | cut -f3 >"$work/labels.txt"
n=$(wc -l <"$work/ids.jsonl")

echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; flags: $(grep -m1 -o -w -E 'avx512_vnni|avx_vnni|avx512_bf16|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "# model $model ($("$PYTHON" -c "import json,sys; c=json.load(open(sys.argv[1])); print('L%d/H%d' % (c['num_hidden_layers'], c['hidden_size']))" "$model/config.json")), $n docs of $REVIEWS, threads $THREADS, batch $BATCH, max_length $MAX_LENGTH, $R rounds; bertune int8 kernel: ${BERTUNE_INT8_KERNEL:-automatic}, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (peer $PEER_CORETYPE), ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset}"

# Agreement: the peer's fp32 logits against bertune predict's (int8 schemes differ).
run "$BERTUNE" predict --model "$model" --input "$docs" --threads "$THREADS" --batch-size "$BATCH" \
  --max-length "$MAX_LENGTH" --output "$work/predict.jsonl" 2>/dev/null

results=$work/results.txt
: >"$results"
now() { date +%s.%N; }
for round in $(seq "$R"); do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  pred=(); [ "$round" = 1 ] && pred=(--pred "$work/predict.jsonl")
  line=$(peer "$model" "$work/ids.jsonl" "$work/labels.txt" --n "$n" --batch "$BATCH" --threads "$THREADS" "${pred[@]}")
  read -r f32 i8 diff <<<"$(echo "$line" | "$PYTHON" -c '
import json,sys; r=json.loads(sys.stdin.read())
print("%.2f %.2f %s" % (r["fp32_docs_per_s"], r["int8_docs_per_s"], r.get("max_abs_logit_diff_vs_bertune", "-")))')"
  [ "$round" = 1 ] && echo "# agreement torch-fp32 vs bertune predict: max |logit diff| $diff"
  echo "torch-fp32 $f32" >>"$results"
  echo "torch-int8 $i8" >>"$results"
  echo "round $round torch: fp32 $f32, int8 $i8 docs/s (forward loop) load=$load"
  for v in fp32 int8; do
    flag=(); [ $v = int8 ] && flag=(--int8)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    t0=$(now)
    line=$(run "$BERTUNE" eval --model "$model" --data "$docs" --threads "$THREADS" --batch-size "$BATCH" \
      --max-length "$MAX_LENGTH" "${flag[@]}" --json 2>/dev/null | tail -n 1)
    t1=$(now)
    read -r whole inproc count <<<"$(echo "$line" | "$PYTHON" -c "
import json,sys
r=json.loads(sys.stdin.read()); c=sum(map(sum, r['eval_confusion_matrix'])); t=$t1-$t0
print('%.2f %.2f %d' % (c/t, r['eval_samples_per_second'], c))")"
    [ "$count" = "$n" ] || { echo "bertune eval counted $count docs, the peer $n" >&2; exit 1; }
    echo "bertune-$v $whole" >>"$results"
    echo "bertune-$v-inproc $inproc" >>"$results"
    echo "round $round bertune-$v: $inproc docs/s eval loop ($whole whole process) load=$load"
  done
done

"$PYTHON" - "$results" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    runs.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in runs.items()}
print("\n| contender | docs/s median [min-max] |\n|---|---|")
names = {"torch-fp32": "torch fp32 (forward loop)", "torch-int8": "torch dynamic int8 (forward loop)",
         "bertune-fp32-inproc": "bertune eval fp32 (eval loop)",
         "bertune-int8-inproc": "bertune eval --int8 (eval loop)",
         "bertune-fp32": "bertune eval fp32 (whole process)", "bertune-int8": "bertune eval --int8 (whole process)"}
for k, label in names.items():
    if k in runs:
        print(f"| {label} | {med[k]:.1f} [{min(runs[k]):.1f}-{max(runs[k]):.1f}] |")
def ratio(a, b, target=None):
    r = med[a] / med[b]
    goal = "" if target is None else f" (target >= {target}x){'' if r >= target else '  BELOW TARGET'}"
    print(f"{a} / {b}: {r:.2f}x{goal}")
print()
ratio("bertune-fp32-inproc", "torch-fp32", 1.5)
ratio("bertune-int8-inproc", "torch-int8", 1.5)
ratio("bertune-int8", "torch-int8")  # whole process against forward loop
EOF
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
