#!/usr/bin/env bash
# Soak test of `bertune serve` under hostile clients, on loopback:
#   1. quiet: good POST /v1/classify requests (NSMC reviews) with wrk for QUIET seconds;
#   2. soak: the same good load for SOAK seconds while SLOW slowloris clients trickle
#      header bytes (bench/serve_load/slow_clients.py, which also sends malformed framing)
#      and wrk sends malformed requests (bench/serve_load/malformed.lua).
# Fails (exit 1) unless: no good request got a non-2xx answer or a socket error, the
# good requests' p99 latency under attack is within P99_FACTOR of the quiet run's, RSS
# at the end is within RSS_FACTOR of RSS after warm-up, /health is 200 after the soak,
# and SIGTERM ends the server with status 0.
#
#   bench/serve_soak.sh [MODEL_DIR]     (default: a random-weights model of the main job's shape)
# Environment: SOAK (600 s), QUIET (30 s), WARMUP (60 s into the soak), CONNECTIONS (8
# good), SLOW (128), P99_FACTOR (2), RSS_FACTOR (1.2), BERTUNE, THREADS, PORT, NICE,
# MAX_BATCH, MAX_WAIT_MS as in serve_load.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK=${SOAK:-600}
QUIET=${QUIET:-30}
WARMUP=${WARMUP:-60}
CONNECTIONS=${CONNECTIONS:-8}
SLOW=${SLOW:-128}
P99_FACTOR=${P99_FACTOR:-2}
RSS_FACTOR=${RSS_FACTOR:-1.2}
source bench/serve_common.sh
serve_model "${1:-}"
url=http://127.0.0.1:$PORT
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

cpu_line
echo "# model $MODEL, --threads $THREADS; good load: wrk -c$CONNECTIONS; soak ${SOAK}s with $SLOW slow clients"
quiet=$(wrk_result -t2 -c"$CONNECTIONS" -d"${QUIET}s" --timeout 10s -s bench/serve_load/classify.lua "$url")
echo "quiet $quiet"

( for _ in $(seq "$SOAK"); do rss; sleep 1; done ) >"$work/rss.txt" &
sampler=$!
nice -n "$NICE" python3 bench/serve_load/slow_clients.py "$PORT" "$SLOW" "$SOAK" >"$work/slow.json" &
slow=$!
nice -n "$NICE" wrk -t1 -c2 -d"${SOAK}s" --timeout 10s -s bench/serve_load/malformed.lua "$url" >"$work/malformed.txt" &
malformed=$!
sleep 2  # the slow clients are connected before the measured load starts
soak=$(wrk_result -t2 -c"$CONNECTIONS" -d"$((SOAK - 2))s" --timeout 10s -s bench/serve_load/classify.lua "$url")
wait "$sampler" "$slow" "$malformed" || true
echo "soak  $soak"
echo "slow clients $(cat "$work/slow.json")"
echo "malformed (wrk) $(grep '^RESULT' "$work/malformed.txt" | sed 's/^RESULT //')"
curl -sf "$url/metrics" | grep -E '^bertune_(errors_total|open_connections)' | sed 's/^/  /'

warm=$(sed -n "${WARMUP}p" "$work/rss.txt")
last=$(tail -1 "$work/rss.txt")
echo "rss_kb after_warmup(${WARMUP}s)=$warm last=$last max=$(sort -n "$work/rss.txt" | tail -1)"
healthy=$(curl -s -o /dev/null -w '%{http_code}' "$url/health")
t0=$(date +%s.%N)
stop_server
echo "health_after_soak=$healthy exit_status_after_sigterm=$server_rc in $(echo "$(date +%s.%N) - $t0" | bc) s"

fail=0
check() {  # check CONDITION_TEXT PYTHON_EXPR
  if python3 -c "import sys; sys.exit(0 if ($2) else 1)"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
q99=$(field "$quiet" p99_ms); s99=$(field "$soak" p99_ms)
check "good requests: no 4xx/5xx/socket errors ($(field "$soak" status_4xx)/$(field "$soak" status_5xx)/$(field "$soak" socket_errors))" \
  "$(field "$soak" status_4xx) + $(field "$soak" status_5xx) + $(field "$soak" socket_errors) == 0"
check "p99 under attack ${s99} ms <= ${P99_FACTOR} x quiet ${q99} ms" "$s99 <= $P99_FACTOR * $q99"
check "rss last ${last} kB <= ${RSS_FACTOR} x after warm-up ${warm} kB" "$last <= $RSS_FACTOR * $warm"
check "health 200 after the soak" "'$healthy' == '200'"
check "exit status 0 after SIGTERM" "$server_rc == 0"
exit "$fail"
