"""Hessian trace: Hutch++ against Hutchinson at equal numbers of Hessian-vector products.

Goal (DESIGN.md section 6): Hutch++ beats Hutchinson at equal products, i.e. a smaller mean
squared relative error of the trace estimate.

Same model as ``hessian_vs_pyhessian.py --model mlp``: MLP 64-32-32-10 (3,466 parameters) trained
10 epochs of plain SGD in this script, full-batch mean cross-entropy on the 1,437 digits training
examples, float32 products. The truth is the exact trace of the dense float64 Hessian.

For each budget of products (12, 30, 60, 120) and each of 20 seeds:

    ours Hutchinson   ``hutchinson_trace(operator, num_samples=budget, seed)``
    ours Hutch++      ``hutchpp_trace(operator, num_products=budget, seed)`` (budget/3 sketch,
                      budget/3 exact part, the rest Hutchinson on the deflated remainder)
    PyHessian         ``hessian(...).trace(maxIter=budget, tol=0)``: Hutchinson with Rademacher
                      probes; tol=0 disables its early stop so it takes exactly ``budget`` products
                      (seeds 1000..1019: with ``torch.manual_seed(s)`` PyHessian draws exactly the
                      probes of our seed s, checked once, so the same seeds would just repeat our numbers)

and the mean squared relative error ``mean_seeds ((estimate - tr H) / tr H)^2``. Two expected
values from the exact Hessian explain the numbers:

    Hutchinson expected  ``2 (||H||_F^2 - sum_i H_ii^2) / (budget tr(H)^2)`` (exact; a check)
    Hutch++ oracle       the same formula for the deflated remainder R = H - V_s L_s V_s^T with
                         ``budget - 2s`` samples, where V_s are the exact top-s eigenvectors
                         (largest |lambda|, s = budget // 3): what Hutch++ would get if its sketch
                         found the dominant eigenvectors exactly (a real sketch does somewhat worse)

Hutch++ spends two thirds of its products on the low-rank part, so it wins only where the top-s
eigenvalues hold enough of ||H||_F^2 (the share is printed): at a small budget its remainder gets
a third of Hutchinson's samples.

How to read the output: table 1, the mean squared relative error per budget (+- its standard
error over the seeds) of each estimator and the two expected values; table 2, median wall seconds
per estimate (one run per seed, not interleaved: for information; the goal is about products).
For reference also PyHessian's default ``trace()`` (maxIter=100, tol=1e-3).

    python benchmarks/hessian_trace.py [--quick] [--seeds 20] [--budgets 12 30 60 120]

Needs ``pip install --no-deps pyhessian==0.1`` for the PyHessian rows (skipped when missing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


# torch.manual_seed(s) makes PyHessian draw exactly our probes of seed s (see same_probes below):
# its MSE rows use other seeds, so that they are an independent sample.
PYHESSIAN_SEED_OFFSET = 1000


def _pm(summary: dict) -> str:
    return f"{summary['mse_rel']:.3g} +- {summary['mse_rel_standard_error']:.2g}"


def run_pyhessian_trace(model, x, y, max_iter, tol, seed):
    torch.manual_seed(seed)  # PyHessian draws its probes from the global generator
    before = C.pyhessian_hvp_count()
    started = time.perf_counter()
    with C.pyhessian_of(model, x, y) as h:
        samples = h.trace(maxIter=max_iter, tol=tol)
    return {
        "estimate": float(statistics.fmean(samples)),
        "products": C.pyhessian_hvp_count() - before,
        "wall_s": time.perf_counter() - started,
    }


def run_ours(method, model, x, y, budget, seed):
    from losslandscape.hessian import hutchinson_trace, hutchpp_trace

    started = time.perf_counter()
    operator = C.our_operator(model, x, y)
    if method == "hutchinson":
        record = hutchinson_trace(operator, num_samples=budget, seed=seed)
    else:
        record = hutchpp_trace(operator, num_products=budget, seed=seed)
    return {
        "estimate": record["estimate"],
        "standard_error": record["standard_error"],
        "products": record["num_products"],
        "wall_s": time.perf_counter() - started,
    }


def summarize(runs, trace) -> dict:
    errors = [(r["estimate"] - trace) / trace for r in runs]
    squared = [e * e for e in errors]
    return {
        "mse_rel": statistics.fmean(squared),
        "mse_rel_standard_error": statistics.stdev(squared) / len(squared) ** 0.5 if len(squared) > 1 else float("nan"),
        "mean_rel_error": statistics.fmean(errors),
        "max_abs_rel_error": max(abs(e) for e in errors),
        "mean_products": statistics.fmean(r["products"] for r in runs),
        "median_wall_s": C.median([r["wall_s"] for r in runs]),
        "estimates": [r["estimate"] for r in runs],
        "standard_errors": [r.get("standard_error") for r in runs],
    }


def oracle_hutchpp_mse(hessian: torch.Tensor, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, budget: int) -> dict:
    """Expected relative MSE of Hutch++ whose sketch spans exactly the top-s eigenvectors (by |lambda|)."""
    trace = float(hessian.diagonal().sum())
    sketch = budget // 3
    samples = budget - 2 * sketch
    top = torch.argsort(eigenvalues.abs(), descending=True)[:sketch]
    v, lam = eigenvectors[:, top], eigenvalues[top]
    remainder = hessian - (v * lam) @ v.T
    variance = 2 * (float((remainder**2).sum()) - float((remainder.diagonal() ** 2).sum()))
    return {
        "sketch_size": sketch,
        "residual_samples": samples,
        "expected_mse_rel": variance / (samples * trace**2),
        "top_s_frobenius_share": float((lam**2).sum()) / float((eigenvalues**2).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[12, 30, 60, 120])
    parser.add_argument("--quick", action="store_true", help="8 seeds, budgets 12 and 60")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budgets = 8, [12, 60]
    C.setup_from(args)
    total_started = time.perf_counter()
    seeds = list(range(args.seeds))
    print(f"Hessian trace: Hutch++ vs Hutchinson at equal products\n{C.describe_machine()}\n")

    x, y = C.digits()
    model, model_info = C.trained_model("mlp", x, y)
    print(C.describe_model(model_info))
    eigenvalues, exact, hessian, eigenvectors = C.exact_spectrum(model, x, y, vectors=True)
    oracle = {budget: oracle_hutchpp_mse(hessian, eigenvalues, eigenvectors, budget) for budget in args.budgets}
    del hessian, eigenvectors
    trace = exact["trace"]
    hutchinson_variance = 2 * (exact["frobenius_squared"] - exact["diagonal_squared"])  # Var(z^T H z), Rademacher z
    top = eigenvalues.flip(0)
    print(
        f"exact trace {trace:.6g} (dense float64 Hessian, {exact['dim']} x {exact['dim']}); "
        f"top-5 eigenvalues hold {float(top[:5].sum()) / trace:.1%} of it, top-40 {float(top[:40].sum()) / trace:.1%}; "
        f"most negative eigenvalue {float(eigenvalues[0]):.3g}"
    )
    have_pyhessian = C.pyhessian_available()
    if not have_pyhessian:
        print("pyhessian is not installed: its rows are skipped (pip install --no-deps pyhessian==0.1)")

    per_budget = {}
    for budget in args.budgets:
        entry = {
            "hutchinson": summarize([run_ours("hutchinson", model, x, y, budget, s) for s in seeds], trace),
            "hutchpp": summarize([run_ours("hutchpp", model, x, y, budget, s) for s in seeds], trace),
            "hutchinson_expected_mse_rel": hutchinson_variance / (budget * trace**2),
            "hutchpp_oracle": oracle[budget],
        }
        if have_pyhessian:
            runs = [run_pyhessian_trace(model, x, y, budget, 0.0, PYHESSIAN_SEED_OFFSET + s) for s in seeds]
            entry["pyhessian_trace"] = summarize(runs, trace)
        entry["mse_ratio_hutchinson_over_hutchpp"] = entry["hutchinson"]["mse_rel"] / entry["hutchpp"]["mse_rel"]
        entry["hutchpp_better"] = entry["hutchpp"]["mse_rel"] < entry["hutchinson"]["mse_rel"]
        per_budget[budget] = entry

    default_pyhessian = same_probes = None
    if have_pyhessian:
        default_pyhessian = summarize([run_pyhessian_trace(model, x, y, 100, 1e-3, PYHESSIAN_SEED_OFFSET + s) for s in seeds], trace)
        # torch.manual_seed(s) + PyHessian's randint_like per parameter draws exactly the probes of
        # our rademacher_probes(dim, n, seed=s): the two Hutchinson estimates must then agree to rounding
        same_probes = {
            "ours_hutchinson": run_ours("hutchinson", model, x, y, args.budgets[0], 0)["estimate"],
            "pyhessian_trace": run_pyhessian_trace(model, x, y, args.budgets[0], 0.0, 0)["estimate"],
        }
        same_probes["relative_difference"] = abs(same_probes["ours_hutchinson"] - same_probes["pyhessian_trace"]) / abs(trace)

    rows = []
    for budget, e in per_budget.items():
        rows.append([
            budget,
            _pm(e["hutchinson"]),
            e["hutchinson_expected_mse_rel"],
            _pm(e["pyhessian_trace"]) if have_pyhessian else "-",
            _pm(e["hutchpp"]),
            e["hutchpp_oracle"]["expected_mse_rel"],
            f"{e['hutchpp_oracle']['top_s_frobenius_share']:.0%} (s={e['hutchpp_oracle']['sketch_size']})",
            e["mse_ratio_hutchinson_over_hutchpp"],
            e["hutchpp_better"],
        ])
    print(f"\nmean squared relative error of tr(H) over {len(seeds)} seeds (+- its standard error; float32 products)")
    print(C.table(
        ["HVPs", "ours Hutchinson", "Hutchinson expected", "PyHessian trace()", "ours Hutch++", "Hutch++ oracle",
         "top-s share of ||H||_F^2", "MSE Hutchinson / Hutch++", "Hutch++ better"],
        rows,
    ))
    rows = []
    for budget, e in per_budget.items():
        rows.append([
            budget,
            e["hutchinson"]["median_wall_s"],
            e["pyhessian_trace"]["median_wall_s"] if have_pyhessian else "-",
            e["hutchpp"]["median_wall_s"],
        ])
    print("\nmedian wall seconds per estimate (one run per seed, not interleaved)")
    print(C.table(["HVPs", "ours Hutchinson", "PyHessian trace()", "ours Hutch++"], rows))
    if default_pyhessian:
        print(
            f"\nPyHessian default trace() (maxIter=100, tol=1e-3): {default_pyhessian['mean_products']:.1f} HVPs on average, "
            f"mean squared relative error {default_pyhessian['mse_rel']:.3g} (max |rel err| {default_pyhessian['max_abs_rel_error']:.3g})"
        )
    if same_probes:
        print(
            f"same probes (seed 0, {args.budgets[0]} products): ours Hutchinson {same_probes['ours_hutchinson']:.6g}, "
            f"PyHessian trace() {same_probes['pyhessian_trace']:.6g} (relative difference {same_probes['relative_difference']:.1e})"
        )
    met = all(e["hutchpp_better"] for e in per_budget.values())
    print(f"goal (Hutch++ has a smaller error than Hutchinson at every budget): {'met' if met else 'NOT met'}")

    result = {
        "goal": "Hutch++ beats Hutchinson (smaller mean squared relative error of the trace) at equal numbers of HVPs",
        "model": model_info,
        "reference": {
            "source": "exact trace of the dense float64 Hessian",
            "trace": trace,
            "frobenius_squared": exact["frobenius_squared"],
            "diagonal_squared": exact["diagonal_squared"],
            "top5_share": float(top[:5].sum()) / trace,
            "top40_share": float(top[:40].sum()) / trace,
            "top10": exact["top10"],
            "bottom3": exact["bottom3"],
        },
        "seeds": seeds,
        "budgets": {str(b): e for b, e in per_budget.items()},
        "pyhessian_seeds": [PYHESSIAN_SEED_OFFSET + s for s in seeds],
        "pyhessian_default_trace": default_pyhessian,
        "same_probes_check": same_probes,
        "goal_met": met,
        "total_seconds": time.perf_counter() - total_started,
    }
    path = C.write_results("hessian_trace", result)
    print(f"\nwrote {path} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
