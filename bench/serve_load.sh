#!/usr/bin/env bash
# Load test of `bertune serve` on loopback with wrk (Debian package `wrk`):
#   1. single-review POST /v1/classify requests (NSMC test reviews) at 1, 8 and 64
#      connections: texts/s and p50/p90/p99 latency;
#   2. a soak with malformed requests mixed in (1 in 3): zero 5xx, the server alive,
#      RSS sampled every second (first, after warm-up, last, max).
#
#   bench/serve_load.sh [MODEL_DIR]     (default: a random-weights model of the main job's
#                                        shape, ../shared/models/bert-small-klue/config.json)
# Environment: BERTUNE (binary, default build/bertune), THREADS (2), DURATION (10 s per
# level), SOAK (30 s), MAX_BATCH (64), MAX_WAIT_MS (5), PORT (18080), NICE (0).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
SOAK=${SOAK:-30}
source bench/serve_common.sh
serve_model "${1:-}"

cpu_line
echo "# model $MODEL, --threads $THREADS --max-batch ${MAX_BATCH:-64} --max-wait-ms ${MAX_WAIT_MS:-5}, ${DURATION}s per level"
for c in 1 8 64; do
  t=$(( c < 2 ? 1 : 2 ))
  line=$(wrk_result -t"$t" -c"$c" -d"${DURATION}s" --timeout 10s -s bench/serve_load/classify.lua "http://127.0.0.1:$PORT")
  echo "connections=$c $line load=$(cut -d' ' -f1 /proc/loadavg)"
done

echo "# soak: ${SOAK}s at 16 connections, 1 request in 3 malformed"
rss_start=$(rss)
( for _ in $(seq "$SOAK"); do rss; sleep 1; done ) >"$work/rss.txt" &
sampler=$!
line=$(wrk_result -t2 -c16 -d"${SOAK}s" --timeout 10s -s bench/serve_load/soak.lua "http://127.0.0.1:$PORT")
wait "$sampler" || true
echo "soak $line"
metrics=$(curl -sf "http://127.0.0.1:$PORT/metrics")
# /health answers 503 while the model loads: that is not a failure.
five=$(echo "$metrics" | { grep -E '^bertune_requests_total\{.*code="5[0-9][0-9]"' || true; } |
  { grep -v 'endpoint="/health"' || true; } | awk '{s += $2} END {print s + 0}')
echo "$metrics" | grep -E '^bertune_errors_total' | sed 's/^/  /'
warm=$(sed -n '5p' "$work/rss.txt")
echo "rss_kb start=$rss_start after_5s=${warm:-?} end=$(rss) max=$(sort -n "$work/rss.txt" | tail -1)"
healthy=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")
echo "5xx_in_metrics(classify endpoints)=$five health_after_soak=$healthy"
stop_server
rc=$server_rc
echo "server exit status after SIGTERM: $rc"
[ "$five" = 0 ] && [ "$healthy" = 200 ] && [ "$rc" = 0 ]
