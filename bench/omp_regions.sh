#!/usr/bin/env bash
# What merging parallel regions could save: counts the OpenMP parallel regions a bertune command
# opens, per calling object (bertune itself, OpenBLAS, oneDNN), and times one empty parallel
# region (fork + join) at THREADS threads with the same libgomp.
#
#   bench/omp_regions.sh build/bertune bench train ... --steps 10     # run twice with other
#   bench/omp_regions.sh build/bertune bench train ... --steps 30     # --steps: the difference
#                                                                      # / 20 is per step
#   environment: THREADS (2), CC (cc)
# The counter (bench/omp_regions.c) stands in front of libgomp's GOMP_parallel* entry points by
# LD_PRELOAD; a binary built with another OpenMP runtime is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { sed -n 2,11p "$0"; exit 2; }
THREADS=${THREADS:-2} CC=${CC:-cc}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$CC" -O2 -shared -fPIC bench/omp_regions.c -o "$tmp/omp_regions.so" -ldl
"$CC" -O2 -fopenmp bench/omp_empty_region.c -o "$tmp/omp_empty_region"
LD_PRELOAD="$tmp/omp_regions.so" "$@" 2>"$tmp/err" >"$tmp/out" || { cat "$tmp/err" >&2; exit 1; }
echo "parallel regions opened, per calling object:"
{ grep '^omp-regions' "$tmp/err" || echo "omp-regions	0	(none)"; } | cut -f2,3 | sort -rn | sed 's/^/  /'
echo "one empty parallel region, $THREADS threads (5 runs of 200,000; libgomp's default wait policy, then PASSIVE):"
"$tmp/omp_empty_region" "$THREADS" 200000 | sed 's/^/  /'
OMP_WAIT_POLICY=PASSIVE "$tmp/omp_empty_region" "$THREADS" 20000 | sed 's/^/  passive: /'
