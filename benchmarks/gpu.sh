#!/usr/bin/env bash
# The GPU checks of issue 17 on one CUDA device, in under 5 minutes: the step time limits add up
# to 270 s. Each step writes results/gpu_<step>.json and prints its tables; a summary ends the run.
# Not yet run on a GPU (no CUDA machine so far): the sizes below are estimates.
#   bash benchmarks/gpu.sh                 # DEVICE=cuda; pick the card with CUDA_VISIBLE_DEVICES, not
#                                          # cuda:N (scan_precision.py synchronizes the current device)
#   DEVICE=cpu bash benchmarks/gpu.sh      # dry run of the same steps on the CPU at tiny sizes,
#                                          # written to results/dryrun_gpu_<step>.json (do not commit)
# EXAMPLES, POINTS and THREADS override the sizes and the torch CPU threads.
#
# plane     scan_precision.py: the exact 21 x 21 plane (points_per_batch 1) vs the 1 % early-stopped
#           and the refined plane, vs loss-landscapes and a Li-style DataLoader loop, on 10,000
#           CIFAR-sized examples (the 50,000 of the CPU default would not leave time for the other
#           steps). The references cost one full pass per point wherever it is, so they are timed
#           on one row of the plane and scaled (--reference-points).
# vmap16    the same plane with points_per_batch 16, no references: its exact plane is the vmap
# vmap64    setting (ppb 1 is the plane step's), its precision planes the early-stopped plane under vmap
# hessian   hessian_vs_pyhessian.py: top-5 eigenvalues vs PyHessian, both libraries on the device
#           (the truth, a dense float64 Hessian or a float64 Lanczos, stays on the CPU)
# Only untimed work runs on the CPU here (the scan model's training, the Hessian truth), hence
# THREADS 8 by default on the GPU machine's cores.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}

if [ "$DEVICE" = cpu ]; then
  prefix=dryrun_gpu_ EXAMPLES=${EXAMPLES:-512} POINTS=${POINTS:-5} THREADS=${THREADS:-1}
  hessian_size=(--quick --seeds 1 --models mlp)  # the code path; the SmallCNN's sweep takes minutes on one core
  slower=3  # the limits are sized for the GPU; on one shared CPU core the Hessian step took 40-80 s of its 105
else
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu.sh: no CUDA device visible (DEVICE=cpu bash benchmarks/gpu.sh for a dry run on the CPU)"; exit 2; }
  prefix=gpu_ EXAMPLES=${EXAMPLES:-10000} POINTS=${POINTS:-21} THREADS=${THREADS:-8}
  hessian_size=() slower=1
fi
common=(--device "$DEVICE" --threads "$THREADS" --no-wait)
plane=(--workers 1 --examples "$EXAMPLES" --points "$POINTS")
started=$SECONDS
summary=() status=0

# step NAME LIMIT_S COMMAND...: run it under a time limit; passed = exit 0 and a fresh results file
step() {
  local name=$1 limit=$(($2 * slower)) json="benchmarks/results/$prefix$1.json" marker rc outcome detail
  shift 2
  marker=$(mktemp)  # the results file must be newer than this to count (not one from an earlier run)
  echo "== [$name, limit ${limit} s] $*"
  timeout -k 5 "$limit" "$@" --name "$prefix$name"
  rc=$?
  if [ $rc -eq 0 ] && [ "$json" -nt "$marker" ]; then
    outcome=passed detail=$json
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    outcome="TIMED OUT" detail="over ${limit} s" status=1
  else
    outcome=FAILED detail="exit $rc" status=1
  fi
  summary+=("$(printf '%-9s  %-7s  %s' "$outcome" "$name" "$detail")")
  rm -f "$marker"
}

step plane 85 python benchmarks/scan_precision.py "${common[@]}" "${plane[@]}" --reference-points "$POINTS"
for ppb in 16 64; do
  step "vmap$ppb" 40 python benchmarks/scan_precision.py "${common[@]}" "${plane[@]}" --points-per-batch "$ppb" --skip-references
done
step hessian 105 python benchmarks/hessian_vs_pyhessian.py "${common[@]}" "${hessian_size[@]}"

echo "== summary: DEVICE=$DEVICE, $((SECONDS - started)) s"
printf '%s\n' "${summary[@]}"
exit $status
