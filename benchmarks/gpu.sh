#!/usr/bin/env bash
# The GPU checks of issue 17, in under 5 minutes on one CUDA device; each writes results/<name>.json.
#   bash benchmarks/gpu.sh
# 1. the plane benchmark: exact 21 x 21 plane vs the 1 % early-stopped and the refined plane vs
#    loss-landscapes and a Li-style DataLoader loop (10,000 CIFAR-sized examples: the 50,000 of the
#    CPU default fit too, but five planes of them would not fit in 5 minutes with the references)
# 2. the vmap settings: the exact plane with points_per_batch 1, 16, 64 (no references)
# 3. Hessian top-5 vs PyHessian: hessian_vs_pyhessian.py has no --device flag yet (it runs on the
#    CPU); it is run --quick here so that the json exists, and is NOT a GPU figure.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')" || exit 2
status=0
run() { echo "== $*"; timeout "${LIMIT:-100}" "$@" || status=1; }
run python benchmarks/scan_precision.py --device cuda --workers 1 --examples 10000 --points 21 --no-wait --name gpu_scan_precision
for ppb in 16 64; do
  LIMIT=40 run python benchmarks/scan_precision.py --device cuda --workers 1 --examples 10000 --points 21 --points-per-batch "$ppb" \
    --skip-references --no-wait --name "gpu_scan_precision_vmap$ppb"
done
LIMIT=60 run python benchmarks/hessian_vs_pyhessian.py --quick --no-wait
exit $status
