"""Benchmark: a certified plane (early-stopped points, refined grid) against exact planes.

On a synthetic CIFAR-sized split (``--examples`` images of 3 x 32 x 32, 10 classes: a class
pattern plus noise, default 50,000) and a SmallCNN trained for a few SGD steps on it, the
``--points`` x ``--points`` plane (default 21 x 21, span [-1, 1], two filter-normalized Gaussian
directions) is computed by, in one process and one run each:

    exact            ``run_scan`` with ``precision: null``: every point a full pass (the reference)
    precision        ``run_scan`` with ``precision: {relative: --relative, confidence: 0.95}``
    precision+refine the same, on a plane refined from a stride-4 coarse grid (``scan.plane.refine``)
    loss-landscapes  ``planar_interpolation`` 3.0.6 (its own, shifted grid: examples and time only)
    Li-style loop    per point: load the parameters, a ``DataLoader`` loop over the split (batch 128)

Both references cost one full pass per point, whatever the point: ``--reference-points K`` times them
on K points of one row instead (loss-landscapes' ``linear_interpolation``, the Li-style loop over
one row) and scales seconds and examples to the whole plane, which the results file says.

Reported per variant: seconds, examples evaluated (sum over points), the ratios against the
exact plane, loss-landscapes and the Li-style loop, and the contour accuracy against the exact
plane: the fraction of the crossings of 20 contour levels placed within one grid step
(:func:`losslandscape.landscape.refine.contour_agreement`). Goal (issue 17): >= 5x fewer examples
and >= 3x less wall time than the exact plane at equal contour accuracy.

    python benchmarks/scan_precision.py [--examples 50000] [--points 21] [--device cpu|cuda] [--skip-references]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402
from losslandscape.landscape.refine import contour_agreement, contour_levels  # noqa: E402
from losslandscape.landscape.scans import PlaneScan, run_scan  # noqa: E402

SPAN, LEVELS = 1.0, 20


def synthetic_cifar(examples: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-sized images: a fixed random pattern per class, scaled down, plus unit Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (examples,), generator=generator)
    x = 0.15 * patterns[y] + torch.randn(examples, 3, 32, 32, generator=generator)
    return x, y


def briefly_trained_cnn(x: torch.Tensor, y: torch.Tensor, steps: int = 60) -> torch.nn.Module:
    """A SmallCNN after a few SGD steps: a loss that varies over the plane, as a trained model's does."""
    model = C.build_model("cnn", (3, 32, 32)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (128,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


def ours(model, theta, directions, x, y, args, tmp: Path, **scan_settings):
    scan = PlaneScan(x_span=(-SPAN, SPAN), y_span=(-SPAN, SPAN), x_points=args.points, y_points=args.points,
                     orthogonalize=False, **scan_settings)
    evaluator = Evaluator(model, x, y, batch_size=args.batch_size, workers=args.workers,
                          first_layer_mb=512 if args.device == "cpu" else 0)
    started = time.perf_counter()
    result = run_scan(scan, theta, directions, {"train": evaluator}, tmp / f"{len(scan_settings)}_{time.time()}.npz",
                      points_per_batch=args.points_per_batch, progress=False)
    _sync(args.device)
    return time.perf_counter() - started, float(result.examples["train"].sum()), result


def loss_landscapes_plane(model, theta, directions, x, y, args) -> tuple[float, float]:
    import copy

    import loss_landscapes
    import loss_landscapes.metrics

    d1, d2 = directions
    step = 2 * SPAN / (args.points - 1)
    start = {k: theta[k] - SPAN * d1[k] - SPAN * d2[k] for k in theta}
    ends = [{k: start[k] + args.points * step * d[k] for k in theta} for d in (d1, d2)]
    models = []
    for params in (start, *ends):
        copied = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in copied.named_parameters():
                p.copy_(params[name])
        models.append(copied)
    metric = loss_landscapes.metrics.Loss(F.cross_entropy, x, y)
    started = time.perf_counter()
    if args.reference_points:  # one row of K points, scaled below: every point costs one full pass
        loss_landscapes.linear_interpolation(models[0], models[1], metric, steps=args.reference_points, deepcopy_model=True)
    else:
        loss_landscapes.planar_interpolation(*models, metric, steps=args.points, deepcopy_model=True)
    _sync(args.device)
    return _whole_plane(time.perf_counter() - started, len(x), args)


def _whole_plane(seconds: float, examples: int, args) -> tuple[float, float]:
    """Seconds and examples of the whole plane, from the points that were timed."""
    timed = args.reference_points or args.points**2
    return seconds * args.points**2 / timed, float(examples * args.points**2)


def li_style_loop(model, theta, directions, x, y, args) -> tuple[float, float]:
    """Li et al.'s plot_surface loop: per point, copy the weights in and iterate a DataLoader."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=False)
    axis = np.linspace(-SPAN, SPAN, args.points)
    points = [(a, b) for b in axis for a in axis]
    if args.reference_points:
        points = [(a, axis[0]) for a in np.linspace(-SPAN, SPAN, args.reference_points)]
    parameters = dict(model.named_parameters())
    started = time.perf_counter()
    with torch.no_grad():
        for alpha, beta in points:
            for name, p in parameters.items():
                p.copy_(theta[name] + alpha * directions[0][name] + beta * directions[1][name])
            total, correct = 0.0, 0
            for xb, yb in loader:
                logits = model(xb)
                total += F.cross_entropy(logits, yb, reduction="sum").item()
                correct += int((logits.argmax(1) == yb).sum())
        for name, p in parameters.items():
            p.copy_(theta[name])
    _sync(args.device)
    return _whole_plane(time.perf_counter() - started, len(x), args)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--points", type=int, default=21)
    parser.add_argument("--relative", type=float, default=0.01, help="precision.relative (95 %% confidence)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="evaluation batch: the granularity of early stopping; 128 as the Li-style loop (the CPU cache favours it)")
    parser.add_argument("--budget", type=float, default=0.5, help="refine.budget")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--points-per-batch", type=int, default=1, help="vmap points for the exact plane (GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-references", action="store_true", help="no loss-landscapes / Li-style loop")
    parser.add_argument("--reference-points", type=int, default=0,
                        help="time the references on this many points of one row, scaled to the plane (0: the whole plane)")
    parser.add_argument("--name", default="scan_precision", help="results/<name>.json")
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_from(args)
    print(f"Certified plane: {args.points} x {args.points}, {args.examples} x 3x32x32 synthetic, SmallCNN, "
          f"precision {args.relative:.0%} at 95 %, device {args.device}\n{C.describe_machine()}\n")
    x, y = synthetic_cifar(args.examples)
    model = briefly_trained_cnn(x, y).to(args.device)
    x, y = x.to(args.device), y.to(args.device)
    theta = parameters_of(model)
    directions = C.directions(theta, 2)
    precision = {"relative": args.relative, "confidence": 0.95}
    variants, grids = {}, {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for key, settings in {"exact": {}, "precision": {"precision": precision},
                              "precision+refine": {"precision": precision, "refine": {"stride": 4, "budget": args.budget}}}.items():
            if key == "precision+refine" and (args.points - 1) % 4:
                continue
            seconds, examples, result = ours(model, theta, directions, x, y, args, tmp, **settings)
            variants[key], grids[key] = {"seconds": seconds, "examples": examples}, result.values["train_loss"]
            print(f"{key}: {seconds:.1f} s, {examples:.3g} examples")
    if not args.skip_references:
        for key, run in (("loss-landscapes 3.0.6", loss_landscapes_plane), ("Li-style DataLoader loop", li_style_loop)):
            seconds, examples = run(model, theta, directions, x, y, args)
            variants[key] = {"seconds": seconds, "examples": examples}
            print(f"{key}: {seconds:.1f} s")
    exact = grids["exact"]
    levels = contour_levels(exact, LEVELS)
    rows = []
    for key, entry in variants.items():
        if key in grids:
            entry["contours_within_one_step"] = contour_agreement(exact, grids[key], levels)
            entry["max_abs_diff_vs_exact"] = float(np.nanmax(np.abs(grids[key] - exact)))
        for base in ("exact", "loss-landscapes 3.0.6", "Li-style DataLoader loop"):
            if base in variants:
                entry[f"examples_ratio_vs_{base}"] = variants[base]["examples"] / entry["examples"]
                entry[f"time_ratio_vs_{base}"] = variants[base]["seconds"] / entry["seconds"]
        rows.append([key, entry["seconds"], f"{entry['examples']:.3g}", f"{entry['examples_ratio_vs_exact']:.2f}x",
                     f"{entry['time_ratio_vs_exact']:.2f}x", f"{entry.get('contours_within_one_step', float('nan')):.3f}"])
    print(C.table(["variant", "s / plane", "examples", "fewer examples vs exact", "faster vs exact", "contours within 1 step"], rows))
    best = variants.get("precision+refine") or variants["precision"]
    goal = {"examples": best["examples_ratio_vs_exact"] >= 5, "time": best["time_ratio_vs_exact"] >= 3,
            "contours": best["contours_within_one_step"]}
    print(f"goal (>= 5x fewer examples, >= 3x faster than exact): {goal}")
    results = {"examples": args.examples, "points": args.points, "relative": args.relative, "batch_size": args.batch_size,
               "reference_points_timed": args.reference_points or args.points**2,
               "device": args.device, "loss_at_theta": float(exact[args.points // 2, args.points // 2]),
               "loss_range": [float(np.nanmin(exact)), float(np.nanmax(exact))], "variants": variants, "goal": goal}
    print(f"wrote {C.write_results(args.name, results)}")


if __name__ == "__main__":
    main()
