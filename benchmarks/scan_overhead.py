"""Benchmark 1: what an N-point line scan costs on top of N plain evaluation passes.

Setup. The digits training split (1,437 examples, 1x8x8), evaluation batch size 4096 (the config
default: one batch per point), the default SmallCNN (13,706 parameters) and the MLP (64, 64;
8,970 parameters), untrained (a forward pass costs the same at any weights), one
filter-normalized Gaussian direction, a 51-point line (the ``scan=line`` default). Every variant
does the work of one whole scan; all are timed interleaved in one process (see ``_common.py``):

    plain (forward + loss)   N x  F.cross_entropy(model(x), y)          (what loss-landscapes does per point)
    plain                    N x  summed cross-entropy and correct-count over the batches, under
                             torch.inference_mode: loss AND accuracy, the two numbers a scan returns.
                             The baseline of the goal.
    metrics_at/off, /on      Evaluator(...).metrics_at(theta, [d], N coordinates): the engine alone,
                             first-layer shortcut off (first_layer_mb=0) / on (the default 512)
    run_scan/off, /on        run_scan(LineScan(points=N), ...) into a temporary file: what a task runs
                             (fingerprint, partial-file saves about every 5 s, result file)
    run_scan/off, ppb 16     the same with points_per_batch 16 (vmap), for information

The shortcut is skipped automatically for the SmallCNN, whose first layer is a 3x3 conv on one
channel (fan-in 9); its applicability test still runs, so /on and /off both appear.

Goal (DESIGN.md section 6): run_scan with the default settings costs less than 15 % more than N
plain passes, i.e. ``run_scan/on`` / ``plain`` < 1.15 (median of per-round ratios), for each model.

How to read the output: seconds per scan, per point, the ratio to ``plain`` (median of per-round
ratios) and the ratio of the fastest samples (a cross-check less disturbed by other jobs), and
whether the goal holds.

    python benchmarks/scan_overhead.py [--quick] [--points 51] [--models cnn mlp] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402
from losslandscape.landscape.scans import LineScan  # noqa: E402

GOAL = 0.15  # a scan costs less than 15 % more than N plain passes
SHORTCUT_MB = {"off": 0.0, "on": 512.0}
GOAL_VARIANT = "run_scan/on"


def variants(model, x, y, batch_size, theta, d, scan, tmp: Path, quick: bool) -> dict:
    """Every variant: a callable doing one whole scan's worth of work."""
    batches = list(zip(x.split(batch_size), y.split(batch_size)))
    evaluators = {mode: Evaluator(model, x, y, batch_size, first_layer_mb=mb) for mode, mb in SHORTCUT_MB.items()}

    def plain_loss():
        with torch.inference_mode():
            for _ in range(scan.points):
                for xb, yb in batches:
                    F.cross_entropy(model(xb), yb)

    def plain():  # a hand-written evaluation loop: loss and accuracy over the split
        with torch.inference_mode():
            for _ in range(scan.points):
                loss_sum, correct = 0.0, 0
                for xb, yb in batches:
                    logits = model(xb)
                    loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                    correct += int((logits.argmax(1) == yb).sum())

    def metrics_at(mode):
        return lambda: evaluators[mode].metrics_at(theta, [d], scan.coordinates())

    def scan_to_file(mode, ppb=1):
        return lambda: C.scan_afresh(scan, theta, [d], {"train": evaluators[mode]}, tmp / f"line_{mode}_{ppb}.npz",
                                     points_per_batch=ppb, progress=False)

    found = {
        "plain (forward + loss)": plain_loss,
        "plain": plain,
        "metrics_at/off": metrics_at("off"),
        "metrics_at/on": metrics_at("on"),
        "run_scan/off": scan_to_file("off"),
        "run_scan/on": scan_to_file("on"),
        "run_scan/off, ppb 16": scan_to_file("off", 16),
    }
    if quick:
        del found["run_scan/off, ppb 16"], found["metrics_at/off"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=51)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds at least")
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    parser.add_argument("--max-seconds", type=float, default=40.0, help="per model: start no new round after this")
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer variants (a smoke test)")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.max_seconds = 3, 10.0
    C.setup_from(args)
    x, y = C.digits()
    scan = LineScan(points=args.points)
    print(f"Benchmark 1: {args.points}-point line scan vs {args.points} plain evaluation passes; digits train "
          f"{tuple(x.shape)}, batch size {args.batch_size}\n{C.describe_machine()}\n")
    results = {"points": args.points, "batch_size": args.batch_size, "goal": f"{GOAL_VARIANT} / plain < {1 + GOAL}", "models": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        for kind in args.models:
            started = time.perf_counter()
            model = C.build_model(kind, tuple(x.shape[1:]))
            theta = parameters_of(model)
            (d,) = C.directions(theta, 1)
            samples = C.interleaved(variants(model, x, y, args.batch_size, theta, d, scan, Path(tmp_name), args.quick),
                                    repeats=args.repeats, min_seconds=0.5, max_seconds=args.max_seconds)
            status = C.shortcut_status(model, x, args.batch_size, theta, [d], SHORTCUT_MB["on"])
            entry = {"parameters": sum(p.numel() for p in model.parameters()), "shortcut_on_status": status,
                     "rounds": len(samples["plain"]), "variants": {}}
            rows = []
            for name, times in samples.items():
                ratio = C.paired_ratio(times, samples["plain"])
                entry["variants"][name] = {**C.summarize_samples({name: times})[name], "ratio_to_plain": ratio,
                                           "ratio_of_minimums": C.min_ratio(times, samples["plain"])}
                rows.append([name, C.median(times) * 1e3, C.median(times) / args.points * 1e3, f"{ratio:.3f}",
                             f"{C.min_ratio(times, samples['plain']):.3f}", "-" if name == "plain" else f"{ratio - 1:+.1%}"])
            entry["overhead"] = entry["variants"][GOAL_VARIANT]["ratio_to_plain"] - 1
            entry["goal_met"] = entry["overhead"] < GOAL
            entry["wall_s"] = time.perf_counter() - started
            results["models"][kind] = entry
            print(f"## {kind}: {entry['parameters']:,} parameters, shortcut on = {status}, {entry['rounds']} interleaved rounds")
            print(C.table(["variant", "ms / scan", "ms / point", "x plain", "x plain (minimums)", "overhead"], rows))
            print(f"goal ({GOAL_VARIANT} < {1 + GOAL:.2f} x plain): {'met' if entry['goal_met'] else 'NOT met'} "
                  f"({entry['overhead']:+.1%})\n")
    results["goal_met"] = all(e["goal_met"] for e in results["models"].values())
    print(f"wrote {C.write_results('scan_overhead', results)}")


if __name__ == "__main__":
    main()
