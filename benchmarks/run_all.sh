#!/usr/bin/env bash
# Run every benchmark in turn; each writes benchmarks/results/<name>.json and prints its tables.
# About 10 minutes on an idle 2-core machine. Timings suffer when other jobs share the cores, so
# before each timing-sensitive script this waits (at most WAIT_MAX seconds in all, default 2400)
# until the 1-minute load average is below WAIT_LOAD (default 1.5). Extra arguments (e.g. --quick)
# go to every script.
#   bash benchmarks/run_all.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
WAIT_LOAD=${WAIT_LOAD:-1.5}
WAIT_MAX=${WAIT_MAX:-2400}
waited=0

wait_for_low_load() {
  while awk -v limit="$WAIT_LOAD" '{exit !($1 >= limit)}' /proc/loadavg && [ "$waited" -lt "$WAIT_MAX" ]; do
    sleep 15
    waited=$((waited + 15))
  done
  echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) (waited ${waited} s in all)"
}

status=0
for script in scan_overhead scan_vs_loss_landscapes scan_vmap streamed_scan hessian_vs_pyhessian hessian_trace hessian_curvlinops transformer_vs_functional_call; do
  case "$script" in scan_*|streamed_scan|hessian_vs_pyhessian) wait_for_low_load ;; esac
  echo "== python benchmarks/$script.py $*"
  OMP_NUM_THREADS=2 python "benchmarks/$script.py" "$@" || status=1
done
exit $status
