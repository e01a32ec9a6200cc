"""Benchmark 2: the same 21 x 21 plane with this engine and with ``loss-landscapes`` 3.0.6.

Regimes (goals from the issue):

    overhead        the MLP (64, 64) on the digits training split (1,437 x 1x8x8): a forward pass
                    costs a few tenths of a millisecond, so per-point bookkeeping matters.
                    Goal: ours at least 1.5x faster.
    overhead_test   the same MLP on the digits test split (360 examples): the per-point
                    bookkeeping is a larger share still (same goal, for information).
    compute         the default SmallCNN (16, 32) on all 1,797 digits (a few thousand images):
                    the forward pass decides. Goal: ours at least as fast.

What is timed, per plane (441 points), all variants interleaved in one process:

    theirs  ``loss_landscapes.planar_interpolation(start, end_one, end_two, Loss(F.cross_entropy, x, y),
            steps=21, deepcopy_model=True)``: its three deep copies, its in-place parameter walk, one
            forward + ``.item()`` per point, with autograd enabled (the library does not disable it).
            Building the three end-point models is outside the timed region. Loss only.
    ours    ``run_scan(PlaneScan(21 x 21, orthogonalize=False), theta, [d1, d2], {"train": Evaluator(
            model, x, y, batch_size=len(x), first_layer_mb, workers)}, path, points_per_batch)``: what
            a task runs (fingerprint, partial-file saves, result file). The default settings (shortcut
            on, points_per_batch 1, workers auto: one forked single-threaded process per torch thread,
            here 2) and, in this process on torch's threads (workers 1), the first-layer shortcut on /
            off (skipped automatically for the SmallCNN, so not timed twice) and points_per_batch 16
            (vmap; MLP regimes only: for the SmallCNN on CPU vmap is several times slower, see
            scan_vmap.py). Loss AND accuracy at every point. The worker processes are started by the
            untimed warm-up run, as a task starts them once per evaluator; the last Linear layer is
            applied class-major in every variant (landscape/last_layer.py).

Identical grid. Our plane is ``theta + a d1 + b d2`` for a, b in linspace(-1, 1, 21) (spacing 0.1).
planar_interpolation 3.0.6 takes ``dir_k = (end_k - start) / steps`` and walks the grid in place:
column i (i = 0..steps-1) sits at ``start + i dir_one``; within a column it moves ``dir_two`` *before*
each evaluation on even columns and *after* reversing on odd ones, so row j of an even column is at
``start + (j + 1) dir_two`` while row j of an odd column is at ``start + j dir_two`` (the even
columns are shifted by one step, a bug of 3.0.6), and the end points themselves are never
reached. With ``start = theta - d1 - d2``, ``end_k = start + 2.1 d_k`` and ``steps = 21``, each step is
0.1 d_k, so column i is our a_i, odd columns are exactly our grid, and row j of an even column is
our b_{j+1} (its last row, b = 1.1, is off our grid). Values are compared on the odd columns, and,
as a check of this reading, on the even columns shifted by one row. Both use the same two
filter-normalized Gaussian directions (seeds 0 and 1, not orthogonalized) and the same data.
Both sides do the same number of forward passes (441, one batch each).

How to read the output: per regime a table of seconds per plane, milliseconds per point, the
speedup over loss-landscapes (median of per-round ratios theirs / ours; > 1 means ours is faster;
"(minimums)": the ratio of the fastest samples, a cross-check less disturbed by other jobs)
and the largest relative difference of the loss values; then whether the goal holds for the default
settings and for the best setting.

    python benchmarks/scan_vs_loss_landscapes.py [--quick] [--repeats 7] [--chunk 16] [--regimes overhead compute]

Needs ``pip install --no-deps loss-landscapes==3.0.6`` (benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from losslandscape.data.digits import load_digits  # noqa: E402
from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402
from losslandscape.landscape.point_workers import resolve_workers  # noqa: E402
from losslandscape.landscape.scans import PlaneScan  # noqa: E402

try:
    import loss_landscapes
    import loss_landscapes.metrics
except ImportError:  # pragma: no cover
    sys.exit("needs loss-landscapes: pip install --no-deps loss-landscapes==3.0.6")

STEPS = 21
SPAN = 1.0
GOALS = {"overhead": 1.5, "overhead_test": 1.5, "compute": 1.0}


def with_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in copied.named_parameters():
            p.copy_(params[name])
    return copied


def theirs(model, theta, d1, d2, x, y):
    """planar_interpolation on exactly our grid's axes (see the module docstring)."""
    step = 2 * SPAN / (STEPS - 1)
    start = {k: theta[k] - SPAN * d1[k] - SPAN * d2[k] for k in theta}
    end_one = {k: start[k] + STEPS * step * d1[k] for k in theta}
    end_two = {k: start[k] + STEPS * step * d2[k] for k in theta}
    models = [with_params(model, p) for p in (start, end_one, end_two)]
    metric = loss_landscapes.metrics.Loss(F.cross_entropy, x, y)

    def run():
        return loss_landscapes.planar_interpolation(*models, metric, steps=STEPS, deepcopy_model=True)

    return run


def ours(model, theta, d1, d2, x, y, first_layer_mb, points_per_batch, workers, tmp: Path):
    scan = PlaneScan(x_span=(-SPAN, SPAN), y_span=(-SPAN, SPAN), x_points=STEPS, y_points=STEPS, orthogonalize=False)
    evaluator = Evaluator(model, x, y, batch_size=len(x), first_layer_mb=first_layer_mb, workers=workers)
    path = tmp / f"plane_{first_layer_mb:g}_{points_per_batch}_{workers}.npz"
    return lambda: C.scan_afresh(scan, theta, [d1, d2], {"train": evaluator}, path, points_per_batch=points_per_batch, progress=False)


def compare_values(their_grid: np.ndarray, our_loss: np.ndarray) -> dict[str, float]:
    """``their_grid[i, j]`` (i along d1, j along d2) against ``our_loss[j, i]`` (rows = b, columns = a)."""
    ours_t = our_loss.T  # [i, j]
    odd = np.arange(1, STEPS, 2)
    even = np.arange(0, STEPS, 2)
    rel = lambda a, b: float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))  # noqa: E731
    return {
        "odd_columns_max_rel_diff": rel(their_grid[odd, :], ours_t[odd, :]),
        "even_columns_shifted_max_rel_diff": rel(their_grid[even, :-1], ours_t[even, 1:]),
        "even_columns_unshifted_max_rel_diff": rel(their_grid[even, :], ours_t[even, :]),
        "points_compared": int(len(odd) * STEPS),
    }


THEIRS = "loss-landscapes 3.0.6"


def default_setting() -> tuple[str, int]:
    """The name of the default variant and what ``evaluation.workers=auto`` gives here (after --threads)."""
    workers = resolve_workers("auto", torch.device("cpu"))
    return f"ours default: shortcut on, points_per_batch 1, workers auto ({workers})", workers


def regime(name, model, x, y, args, tmp: Path):
    theta = parameters_of(model)
    d1, d2 = C.directions(theta, 2)
    status = C.shortcut_status(model, x, len(x), theta, [d1, d2], 512)
    variants = {THEIRS: theirs(model, theta, d1, d2, x, y)}
    # vmap over points is 3-6x slower than the plain loop for the SmallCNN on CPU (scan_vmap.py): not timed here
    chunks = (1, args.chunk) if name != "compute" else (1,)
    default_key, workers = default_setting()
    settings = {default_key: {"first_layer_mb": 512.0, "points_per_batch": 1, "workers": workers}}
    for mb, label in ((512.0, "on"), (0.0, "off")):
        if label == "off" and status != "used":
            continue  # the shortcut is skipped automatically: "off" is the same computation as "on"
        for ppb in chunks:
            settings[f"ours in this process: shortcut {label}, points_per_batch {ppb}"] = {"first_layer_mb": mb, "points_per_batch": ppb, "workers": 1}
    for key, setting in settings.items():
        variants[key] = ours(model, theta, d1, d2, x, y, setting["first_layer_mb"], setting["points_per_batch"], setting["workers"], tmp)
    # one untimed run each: the values for the check, and the warm-up
    outputs = {k: f() for k, f in variants.items()}
    checks = {k: compare_values(outputs[THEIRS], outputs[k].values["train_loss"]) for k in settings}
    samples = C.interleaved(variants, repeats=args.repeats if name != "compute" else args.compute_repeats,
                            min_seconds=1.0, max_seconds=args.max_seconds, warmup=0)
    base = samples[THEIRS]
    rows, entry = [], {"shortcut_on_status": status, "examples": len(x), "input_shape": list(x.shape[1:]),
                       "parameters": sum(p.numel() for p in model.parameters()), "rounds": len(base), "variants": {}}
    for key, times in samples.items():
        speedup = C.paired_ratio(base, times)
        entry["variants"][key] = {**C.summarize_samples({key: times})[key], "speedup_vs_loss_landscapes": speedup,
                                  "speedup_of_minimums": C.min_ratio(base, times),
                                  **settings.get(key, {}), **({"values": checks[key]} if key in checks else {})}
        rows.append([key, C.median(times), C.median(times) / STEPS**2 * 1e3, f"{speedup:.2f}x", f"{C.min_ratio(base, times):.2f}x",
                     f"{checks[key]['odd_columns_max_rel_diff']:.1e}" if key in checks else "-"])
    best = max(settings, key=lambda k: entry["variants"][k]["speedup_vs_loss_landscapes"])
    default = entry["variants"][default_key]["speedup_vs_loss_landscapes"]
    entry.update(best=best, best_speedup=entry["variants"][best]["speedup_vs_loss_landscapes"], default_setting=default_key,
                 default_speedup=default, goal=GOALS[name])
    entry["goal_met_default"] = default >= GOALS[name]
    entry["goal_met_best"] = entry["best_speedup"] >= GOALS[name]
    print(C.table(["engine / setting", "s / plane", "ms / point", "speedup vs l-l", "(minimums)", "max rel diff (odd cols)"], rows))
    check = checks[best]
    print(f"shortcut on: {status}. Goal >= {GOALS[name]}x: default settings {default:.2f}x "
          f"({'met' if entry['goal_met_default'] else 'NOT met'}); best setting ({best}) {entry['best_speedup']:.2f}x "
          f"({'met' if entry['goal_met_best'] else 'NOT met'}).\nValues at the {check['points_compared']} points of the odd "
          f"columns agree to {check['odd_columns_max_rel_diff']:.1e} (relative); even columns agree to "
          f"{check['even_columns_shifted_max_rel_diff']:.1e} after shifting by one row "
          f"({check['even_columns_unshifted_max_rel_diff']:.1e} unshifted: the 3.0.6 grid bug).\n")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds, overhead-bound regime")
    parser.add_argument("--compute-repeats", type=int, default=5, help="interleaved rounds, compute-bound regime")
    parser.add_argument("--chunk", type=int, default=16, help="the vmap chunk (points_per_batch) tried besides 1")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per regime: start no new round after this")
    parser.add_argument("--regimes", nargs="+", default=list(GOALS), choices=list(GOALS))
    parser.add_argument("--quick", action="store_true", help="3 / 2 rounds (a smoke test)")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.compute_repeats, args.max_seconds = 3, 2, 20.0
    C.setup_from(args)
    print(f"Benchmark 2: 21 x 21 plane, this engine vs loss-landscapes 3.0.6\n{C.describe_machine()}\n")
    results = {"steps": STEPS, "span": SPAN, "goals": GOALS, "regimes": {}}
    digits = load_digits()
    splits = {"overhead": (digits.train_x, digits.train_y), "overhead_test": (digits.test_x, digits.test_y),
              "compute": (torch.cat([digits.train_x, digits.test_x]), torch.cat([digits.train_y, digits.test_y]))}
    with tempfile.TemporaryDirectory() as tmp_name:
        for name in args.regimes:
            started = time.perf_counter()
            x, y = splits[name]
            kind = "cnn" if name == "compute" else "mlp"
            model = C.build_model(kind, tuple(x.shape[1:]))
            print(f"## {name}: {type(model).__name__} on digits {tuple(x.shape)}")
            results["regimes"][name] = regime(name, model, x, y, args, Path(tmp_name))
            results["regimes"][name]["wall_s"] = time.perf_counter() - started
    path = C.write_results("scan_vs_loss_landscapes", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
