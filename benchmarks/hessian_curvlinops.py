"""Accuracy cross-check of our top Hessian eigenvalues against curvlinops + scipy ``eigsh``.

``hessian_vs_pyhessian.py --model cnn`` takes its truth from our own Lanczos (float64, tol 1e-10)
because the default SmallCNN (13,706 parameters) is too large for a dense Hessian here. This script
checks that truth with an independent implementation: curvlinops-for-pytorch's
``HessianLinearOperator`` (forward-over-reverse HVPs via ``torch.func``) handed to scipy's ARPACK
``eigsh(k=5, which="LA")``. On the MLP (3,466 parameters) both are also compared with the exact
top-5 of the dense float64 Hessian.

Both in float64, same trained model (10 epochs of plain SGD, as in the other scripts), same data
(the 1,437 digits training examples, one full batch, mean cross-entropy). Reported: the top-5 from
each, their relative differences, HVP agreement on a random vector, products and wall time (one
run each, for information; this is not a speed comparison).

    python benchmarks/hessian_curvlinops.py [--models cnn mlp] [--tol 1e-10]

Needs ``pip install --no-deps curvlinops-for-pytorch==3.0.1 einops==0.8.2 einconv==0.1.0
linear_operator==0.6.1`` (benchmarks/requirements.txt; imports need these four, nothing
of backpack-for-pytorch / opt-einsum is touched by ``HessianLinearOperator``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

K = 5


def curvlinops_top(model, x, y, tol: float, seed: int = 0) -> dict:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh

    model64 = copy.deepcopy(model).double().eval()
    params = [p for p in model64.parameters() if p.requires_grad]
    started = time.perf_counter()
    operator = HessianLinearOperator(
        model64, torch.nn.CrossEntropyLoss(), params, [(x.double(), y)], check_deterministic=False
    )
    scipy_operator = operator.to_scipy()
    count = {"products": 0}

    def matvec(v):
        count["products"] += 1 if v.ndim == 1 else v.shape[1]
        return scipy_operator.matvec(v)

    def matmat(m):
        count["products"] += m.shape[1]
        return scipy_operator.matmat(m)

    counted = LinearOperator(scipy_operator.shape, matvec=matvec, matmat=matmat, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(scipy_operator.shape[0])
    values, _ = eigsh(counted, k=K, which="LA", tol=tol, v0=start)
    return {
        "values": sorted(values.tolist(), reverse=True),
        "products": count["products"],
        "wall_s": time.perf_counter() - started,
        "settings": f"HessianLinearOperator(check_deterministic=False).to_scipy() + eigsh(k={K}, which='LA', tol={tol:g}, ncv default)",
        "operator": operator,
    }


def ours_top(model, x, y, tol: float, seed: int = 0) -> dict:
    from losslandscape.hessian import hessian_eigenpairs

    started = time.perf_counter()
    operator = C.our_operator(model, x, y, torch.float64)
    values, _, record = hessian_eigenpairs(operator, K, tol=tol, seed=seed)
    return {
        "values": values.tolist(),
        "products": record["num_products"],
        "check_products": record.get("check_products", 0),
        "residual_norms": record.get("residual_norms"),
        "wall_s": time.perf_counter() - started,
        "settings": f"hessian_eigenpairs(k={K}, tol={tol:g}), float64, reverse-mode HVPs",
        "operator": operator,
    }


def relative_differences(a, b) -> list[float]:
    return [abs(u - v) / abs(v) for u, v in zip(a, b)]


def check_model(name, x, y, tol) -> dict:
    model, info = C.trained_model(name, x, y)
    print(C.describe_model(info))
    theirs = curvlinops_top(model, x, y, tol)
    ours = ours_top(model, x, y, tol)
    v = torch.randn(ours["operator"].dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    our_hv = ours["operator"].matvec(v)
    their_hv = torch.as_tensor(theirs["operator"].to_scipy().matvec(v.numpy()))
    hvp_difference = float((our_hv - their_hv).norm() / our_hv.norm())
    for record in (theirs, ours):
        del record["operator"]
    entry = {
        "model": info,
        "curvlinops": theirs,
        "ours": ours,
        "hvp_relative_difference": hvp_difference,
        "ours_vs_curvlinops_rel": relative_differences(ours["values"], theirs["values"]),
    }
    rows = [
        ["curvlinops + eigsh", *theirs["values"], theirs["products"], theirs["wall_s"]],
        ["ours Lanczos", *ours["values"], f"{ours['products']} (+{ours['check_products']})", ours["wall_s"]],
    ]
    if name == "mlp":
        eigenvalues, exact, hessian, _ = C.exact_spectrum(model, x, y)
        del hessian
        truth = eigenvalues[-K:].flip(0).tolist()
        entry["exact"] = {"values": truth, **exact}
        entry["ours_vs_exact_rel"] = relative_differences(ours["values"], truth)
        entry["curvlinops_vs_exact_rel"] = relative_differences(theirs["values"], truth)
        rows.insert(0, ["exact (dense eigvalsh)", *truth, "-", exact["build_seconds"] + exact["eigh_seconds"]])
    print(C.table(["method", *(f"lambda_{i + 1}" for i in range(K)), "HVPs", "wall s"], [[r[0], *(f"{v:.10g}" if isinstance(v, float) else v for v in r[1:-1]), r[-1]] for r in rows]))
    print(f"max relative difference ours vs curvlinops: {max(entry['ours_vs_curvlinops_rel']):.1e}; "
          f"HVP relative difference on a random vector: {hvp_difference:.1e}")
    if name == "mlp":
        print(f"max relative error vs exact: ours {max(entry['ours_vs_exact_rel']):.1e}, curvlinops {max(entry['curvlinops_vs_exact_rel']):.1e}")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(C.HESSIAN_MODELS), default=["cnn", "mlp"])
    parser.add_argument("--tol", type=float, default=1e-10, help="eigsh tol and our Lanczos tol")
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_from(args)
    try:
        import curvlinops  # noqa: F401
    except ImportError as error:
        sys.exit(f"curvlinops is not importable ({error}); see benchmarks/requirements.txt")
    started = time.perf_counter()
    x, y = C.digits()
    result = {"tol": args.tol, "models": {}}
    for name in args.models:
        print()
        result["models"][name] = check_model(name, x, y, args.tol)
    result["total_seconds"] = time.perf_counter() - started
    path = C.write_results("hessian_curvlinops", result)
    print(f"\nwrote {path} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
