# Shared by bench/serve_load.sh and bench/serve_soak.sh (sourced from the checkout's
# root): the environment, a random-weights model of the main job's shape when none is
# given, the server on $PORT, its RSS, the CPU line.
BERTUNE=${BERTUNE:-build/bertune}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
NICE=${NICE:-0}
SHARED=${BERTUNE_SHARED:-../shared}
export REVIEWS=${REVIEWS:-$SHARED/data/nsmc/ratings_test.txt}
export BENCH_DIR=$PWD/bench/serve_load
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# serve_model [MODEL_DIR] [serve flags...]: starts the server, waits for /health.
serve_model() {
  local model=${1:-}
  shift || true
  if [ -z "$model" ]; then
    echo "# making a random-weights model of the main job's shape (1 training step)" >&2
    nice -n "$NICE" "$BERTUNE" train --model-config "$SHARED/models/bert-small-klue/config.json" --train-samples 64 \
      --max-steps 1 --eval-strategy no --save-strategy no --output-dir "$work/model" --threads "$THREADS" >/dev/null
    model=$work/model/final
  fi
  MODEL=$model
  nice -n "$NICE" "$BERTUNE" serve --model "$model" --port "$PORT" --threads "$THREADS" \
    --max-batch "${MAX_BATCH:-64}" --max-wait-ms "${MAX_WAIT_MS:-5}" "$@" 2>"$work/server.log" &
  server=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "the server did not become ready" >&2
  exit 1
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
cpu_line() {
  echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
# wrk_result ARGS...: wrk's RESULT line (bench/serve_load/classify.lua), without the tag.
wrk_result() { nice -n "$NICE" wrk "$@" | grep '^RESULT' | sed 's/^RESULT //'; }
# SIGTERM, then the exit status in $server_rc.
stop_server() {
  kill -TERM "$server"
  server_rc=0
  wait "$server" || server_rc=$?
  server=""
}
