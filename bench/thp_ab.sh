#!/usr/bin/env bash
# Transparent huge pages side by side: the same bertune command as is (its buffers of 8 MiB and up
# advised to huge pages) and with THP refused for the process (prctl PR_SET_THP_DISABLE, inherited
# across exec), alternated R rounds. The command must print JSON with the figure named by KEY (a
# rate: higher is faster); prints each round and the median [min-max] of the per-round ratio
# as is / THP refused.
#
#   bench/thp_ab.sh build/bertune bench train --model-config CONFIG ... --json
#   environment: R (3), KEY (real_tokens_per_s), PYTHON (python3)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-3} KEY=${KEY:-real_tokens_per_s} PYTHON=${PYTHON:-python3}
[ $# -gt 0 ] || { echo "usage: bench/thp_ab.sh COMMAND..." >&2; exit 1; }
grep -q madvise /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null ||
  echo "note: THP mode here is $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)" >&2
figure() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['$KEY'])"; }
no_thp() { "$PYTHON" -c "import ctypes,os,sys; ctypes.CDLL(None).prctl(41,1,0,0,0); os.execvp(sys.argv[1], sys.argv[1:])" "$@"; }
ratios=()
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$R"); do
  off=$(no_thp "$@" 2>/dev/null | figure)
  on=$("$@" 2>/dev/null | figure)
  ratios+=("$("$PYTHON" -c "print($on / $off)")")
  echo "round $round  THP refused $off  as is $on  ratio ${ratios[-1]}  load $(cut -d' ' -f1 /proc/loadavg)"
done
"$PYTHON" -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print('as is / THP refused: %.2fx [%.2f-%.2f]' % (statistics.median(r), min(r), max(r)))" "${ratios[@]}"
