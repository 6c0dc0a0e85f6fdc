#!/usr/bin/env bash
# Training throughput of `bertune bench train` against the Hugging Face Trainer on this CPU,
# side by side: R alternated rounds of each contender, then medians [min-max] of real tokens/s
# and the ratios bertune / peer.
#
# The peer is the unmodified HF implementation in ../shared/peer/cpu/hf_peer.py (transformers
# 4.30.2 Trainer on Debian's python3-torch, klue token ids, batch 32) at its best mode: length
# grouping (`group_by_length`), fp32 and with `--bf16` (torch's CPU autocast) where the CPU has
# bf16. Its setup (a source tree of transformers in ~/.cache/bertune-peer) is in
# ../shared/peer/README.md. bertune runs its own step on its own batches (packed), fp32 and, on
# a CPU with bf16, `--precision bf16`.
#
#   bench/train_vs_peer.sh [base | small]            (default base: klue/bert-base's shape)
# Environment: BERTUNE (build/bertune), PYTHON (/usr/bin/python3), R (3 rounds), THREADS (2),
# STEPS / WARMUP (timed and untimed steps of each run; default 12/3 for base, 40/5 for small),
# PEER_CORETYPE (SkylakeX on AVX-512 CPUs, else the environment's: the OpenBLAS core the peer's
# fp32 matmuls run on), BF16 (auto | 0 | 1), OUT (a JSONL of every run; default a temporary file).
set -euo pipefail
cd "$(dirname "$0")/.."
BERTUNE=${BERTUNE:-build/bertune}
PYTHON=${PYTHON:-/usr/bin/python3}
R=${R:-3}
THREADS=${THREADS:-2}
SHARED=${BERTUNE_SHARED:-../shared}
PEER=$SHARED/peer/cpu/hf_peer.py
DATA=$SHARED/data/nsmc/ratings_train.txt
TOK=$SHARED/models/klue-bert-base
shape=${1:-base}
case $shape in
  base) CONF=$SHARED/models/klue-bert-base/config.json; STEPS=${STEPS:-12}; WARMUP=${WARMUP:-3} ;;
  small) CONF=$SHARED/models/bert-small-klue/config.json; STEPS=${STEPS:-40}; WARMUP=${WARMUP:-5} ;;
  *) echo "train_vs_peer.sh: unknown shape '$shape' (base | small)" >&2; exit 1 ;;
esac
for f in "$BERTUNE" "$PEER" "$DATA" "$CONF"; do
  [ -e "$f" ] || { echo "train_vs_peer.sh: $f not found" >&2; exit 1; }
done
"$PYTHON" -c "import torch" 2>/dev/null || {
  echo "train_vs_peer.sh: $PYTHON cannot import torch (apt-get install python3-torch; ../shared/peer/README.md)" >&2
  exit 1
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT=${OUT:-$WORK/runs.jsonl}
flags=$(grep -o -m1 -w 'avx512_bf16\|amx_bf16' /proc/cpuinfo || true)
BF16=${BF16:-auto}
[ "$BF16" = auto ] && { [ -n "$flags" ] && BF16=1 || BF16=0; }
if [ -z "${PEER_CORETYPE+x}" ]; then
  grep -q -w avx512f /proc/cpuinfo && PEER_CORETYPE=SkylakeX || PEER_CORETYPE=${OPENBLAS_CORETYPE:-}
fi
note() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }
note "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) bf16: ${flags:-none}; peer OpenBLAS core: ${PEER_CORETYPE:-auto}"

# The peer trains on the same klue token ids bertune makes of the same reviews.
note "tokenizing $DATA for the peer"
"$BERTUNE" tokenize --tokenizer "$TOK" --input "$DATA" --format tsv --max-length 128 >"$WORK/ids.jsonl"

peer() {  # peer LABEL [--bf16]
  local label=$1; shift
  note "peer $label"
  env ${PEER_CORETYPE:+OPENBLAS_CORETYPE=$PEER_CORETYPE} OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$PEER" \
    --ids "$WORK/ids.jsonl" --data "$DATA" --model "$shape" --mode grouped --steps $((STEPS + WARMUP)) \
    --warmup "$WARMUP" --threads "$THREADS" "$@" >"$WORK/peer.log" 2>&1 || { cat "$WORK/peer.log" >&2; exit 1; }
  grep '^RESULT ' "$WORK/peer.log" | sed 's/^RESULT //' |
    "$PYTHON" -c "import json,sys; r=json.load(sys.stdin); r['who']='$label'; r['load']='$(cut -d' ' -f1-3 /proc/loadavg)'; print(json.dumps(r))" >>"$OUT"
}
ours() {  # ours LABEL [flags]
  local label=$1; shift
  note "bertune $label"
  "$BERTUNE" bench train --model-config "$CONF" --tokenizer "$TOK" --train-file "$DATA" \
    --per-device-train-batch-size 32 --padding packed --max-length 128 --steps "$STEPS" --warmup "$WARMUP" \
    --threads "$THREADS" --json "$@" 2>"$WORK/ours.log" |
    "$PYTHON" -c "import json,sys; r=json.load(sys.stdin); r['who']='$label'; r['tokens_per_s']=r['real_tokens_per_s']; print(json.dumps(r))" >>"$OUT" ||
    { cat "$WORK/ours.log" >&2; exit 1; }
}

for round in $(seq "$R"); do
  note "round $round of $R"
  peer "peer fp32"
  ours "bertune fp32"
  if [ "$BF16" = 1 ]; then
    peer "peer bf16" --bf16
    ours "bertune bf16" --precision bf16
  fi
done

"$PYTHON" - "$OUT" "$shape" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in runs:
    by.setdefault(r["who"], []).append(r["tokens_per_s"])
med = {k: statistics.median(v) for k, v in by.items()}
print(f"\nreal tokens/s, {sys.argv[2]} shape, batch 32 ({len(next(iter(by.values())))} rounds): median [min-max]")
for k, v in by.items():
    print(f"  {k:14s} {med[k]:9.1f} [{min(v):.1f}-{max(v):.1f}]")
gemm = next((r.get("gemm_backend") for r in runs if r.get("gemm_backend")), "?")
print(f"  bertune GEMM: {gemm}")
def ratio(a, b):
    if a in med and b in med:
        lo = min(x / y for x, y in zip(by[a], by[b])); hi = max(x / y for x, y in zip(by[a], by[b]))
        print(f"  {a} / {b}: {med[a] / med[b]:.2f}x  (per round {lo:.2f}-{hi:.2f})")
ratio("bertune fp32", "peer fp32")
ratio("bertune bf16", "peer fp32")
ratio("bertune bf16", "peer bf16")
EOF
