#!/usr/bin/env bash
# bertune eval against the PyTorch peer (bench/peer_torch.py: HF BertForSequenceClassification
# re-implemented, eager), side by side on the same CPU: docs/s on the first N_DOCS NSMC test
# reviews, four contenders run in turn, R rounds:
#   torch fp32, torch int8 (quantize_dynamic)  — tokenization not counted
#   bertune eval fp32, bertune eval --int8     — the whole process: load, read, tokenize, eval
# Then medians [min-max] and the ratios bertune/torch (fp32 against fp32; int8 against
# fp32 and against torch int8). First, a check that the peer computes what
# bertune computes: max |logit difference| against `bertune predict` on the same texts.
#
#   bench/infer_vs_torch.sh [MODEL_DIR | klue-base | small] [N_DOCS]
#     default klue-base: a random-weights klue/bert-base-shaped model (bench/random_bert.py,
#     made once into $WORK_DIR); small: the main job's shape (../shared/models/bert-small-klue);
#     MODEL_DIR: any fp32 classifier directory (e.g. runs/main/final), read only.
#     N_DOCS default 2000.
# Environment: BERTUNE (build/bertune), PYTHON (/usr/bin/python3), THREADS (2), BATCH (64), R (3),
# NICE (0), MAX_LENGTH (128), PEER_BLAS (openmp | single | system, below), WORK_DIR (a
# temporary directory, removed at the end unless given; give one to keep the random model).
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
n_docs=${2:-2000}
"$PYTHON" -c 'import torch, numpy' 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)" >&2; exit 1; }
[ -x "$BERTUNE" ] || { echo "$BERTUNE: not built" >&2; exit 1; }
if [ -n "${WORK_DIR:-}" ]; then work=$WORK_DIR; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
run() { nice -n "$NICE" "$@"; }
# Which BLAS torch's GEMMs run on. Debian's torch links libblas.so.3 = OpenBLAS, by default
# the pthread build, whose own threads fight torch's OpenMP pool inside batched matmuls
# (attention): measured 100x slower under load. openmp (default): the OpenMP build of
# OpenBLAS (threads = torch's pool, nested calls single-threaded); single: one BLAS thread
# (torch parallelises around it); system: as installed. Give the peer whichever is fastest.
PEER_BLAS=${PEER_BLAS:-openmp}
case "$PEER_BLAS" in
  openmp) peer_env=(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}) ;;
  single) peer_env=(OPENBLAS_NUM_THREADS=1) ;;
  system) peer_env=() ;;
  *) echo "PEER_BLAS: openmp | single | system" >&2; exit 1 ;;
esac
peer() { nice -n "$NICE" env "${peer_env[@]}" "$PYTHON" bench/peer_torch.py "$@"; }

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

# The same N reviews for everyone (header + the first N rows), their ids for the peer.
docs=$work/docs.tsv
head -n $((n_docs + 1)) "$REVIEWS" >"$docs"
run "$BERTUNE" tokenize --input "$docs" --max-length "$MAX_LENGTH" "${tok_args[@]}" --threads "$THREADS" \
  --output "$work/ids.jsonl"
n=$(wc -l <"$work/ids.jsonl")

echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# model $model ($("$PYTHON" -c "import json,sys; c=json.load(open(sys.argv[1])); print('L%d/H%d' % (c['num_hidden_layers'], c['hidden_size']))" "$model/config.json")), $n docs of $REVIEWS, threads $THREADS, batch $BATCH, max_length $MAX_LENGTH, $R rounds, PEER_BLAS=$PEER_BLAS"

# Agreement: the peer's logits against bertune predict's (fp32; int8 schemes differ, shown for reference).
run "$BERTUNE" predict --model "$model" --input "$docs" --threads "$THREADS" --batch-size "$BATCH" \
  --max-length "$MAX_LENGTH" --output "$work/predict.jsonl" 2>/dev/null
run "$BERTUNE" predict --model "$model" --input "$docs" --threads "$THREADS" --batch-size "$BATCH" \
  --max-length "$MAX_LENGTH" --int8 --output "$work/predict8.jsonl" 2>/dev/null
for v in fp32 int8; do
  flag=(); against=$work/predict.jsonl
  [ $v = int8 ] && flag=(--int8) && against=$work/predict8.jsonl
  peer --model "$model" --ids "$work/ids.jsonl" --threads "$THREADS" \
    --batch-size "$BATCH" "${flag[@]}" --against "$against" |
    "$PYTHON" -c "import json,sys; r=json.loads(sys.stdin.read()); print('# agreement torch-$v vs bertune predict${flag[*]:+ --int8}: max |logit diff| %.3g, argmax agree %s' % (r['max_abs_logit_diff_vs_bertune'], r['argmax_agree']))"
done

results=$work/results.txt
: >"$results"
now() { date +%s.%N; }
for round in $(seq "$R"); do
  for v in fp32 int8; do
    flag=(); [ $v = int8 ] && flag=(--int8)
    line=$(peer --model "$model" --ids "$work/ids.jsonl" --threads "$THREADS" --batch-size "$BATCH" "${flag[@]}")
    dps=$(echo "$line" | "$PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read())["docs_per_s"])')
    echo "torch-$v $dps" >>"$results"
    echo "round $round torch-$v: $dps docs/s (forward only) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
  for v in fp32 int8; do
    flag=(); [ $v = int8 ] && flag=(--int8)
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
    echo "round $round bertune-$v: $whole docs/s whole process ($inproc in-process eval) load=$(cut -d' ' -f1 /proc/loadavg)"
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
names = {"torch-fp32": "torch fp32 (forward only)", "torch-int8": "torch int8 dynamic (forward only)",
         "bertune-fp32": "bertune eval fp32 (whole process)", "bertune-int8": "bertune eval --int8 (whole process)",
         "bertune-fp32-inproc": "bertune eval fp32 (eval loop only)",
         "bertune-int8-inproc": "bertune eval --int8 (eval loop only)"}
for k, label in names.items():
    if k in runs:
        print(f"| {label} | {med[k]:.1f} [{min(runs[k]):.1f}-{max(runs[k]):.1f}] |")
def ratio(a, b, target):
    r = med[a] / med[b]
    print(f"{a} / {b}: {r:.2f}x (target >= {target}x){'' if r >= target else '  BELOW TARGET'}")
print()
ratio("bertune-fp32", "torch-fp32", 1.5)
ratio("bertune-int8", "torch-fp32", 3.0)
ratio("bertune-int8", "torch-int8", 1.5)
EOF
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
