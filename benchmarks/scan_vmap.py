"""Benchmark 3: vmap chunking (points_per_batch), point workers and the first-layer shortcut, to choose the defaults.

A plane scan (2 directions, like the default ``scan=plane``) through ``run_scan`` on the digits
training split (1,437 examples, batch size 4096 = one batch) for the MLP (64, 64) and the default
SmallCNN, with ``points_per_batch`` 1, 4, 16, 64, ``workers`` 1 (this process, torch's threads) and
``auto`` (one forked single-threaded process per torch thread) and the first-layer shortcut

    off       first_layer_mb = 0
    on        first_layer_mb = 512 (the default; skipped automatically when the first layer's
              fan-in < 16 x directions, which is the case for the SmallCNN's 3x3 conv on 1 channel)
    forced    (SmallCNN only) first_layer_mb = 512 with that fan-in threshold set to 0 in this
              process, to check that skipping it is right

What is timed: one whole ``run_scan`` per variant (fingerprint, partial saves, result file), all
settings of a model interleaved (the workers are started by the untimed warm-up run). No goal: the
numbers choose the defaults of ``evaluation.points_per_batch`` (now 1), ``evaluation.workers`` (now
auto) and ``evaluation.first_layer_mb`` (now 512) and check the shortcut's fan-in threshold
(``MIN_FAN_IN_PER_DIRECTION = 16``).

How to read the output: per model, seconds per plane, milliseconds per point, the speed relative
to the current default (workers auto, points_per_batch 1, shortcut on; median of per-round ratios, > 1 = faster)
and the largest relative difference of the loss grid from the default's (all settings compute the
same numbers up to float32 rounding).

    python benchmarks/scan_vmap.py [--quick] [--mlp-points 21] [--cnn-points 11] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from losslandscape.landscape import first_layer  # noqa: E402
from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402
from losslandscape.landscape.point_workers import resolve_workers  # noqa: E402
from losslandscape.landscape.scans import PlaneScan  # noqa: E402

CHUNKS = (1, 4, 16, 64)


def variant(model, x, y, batch_size, theta, dirs, scan, mb, ppb, workers, forced, path):
    evaluator = Evaluator(model, x, y, batch_size, first_layer_mb=mb, workers=workers)

    def run():
        saved = first_layer.MIN_FAN_IN_PER_DIRECTION
        if forced:
            first_layer.MIN_FAN_IN_PER_DIRECTION = 0
        try:
            return C.scan_afresh(scan, theta, dirs, {"train": evaluator}, path, points_per_batch=ppb, progress=False)
        finally:
            first_layer.MIN_FAN_IN_PER_DIRECTION = saved

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlp-points", type=int, default=21, help="grid side for the MLP")
    parser.add_argument("--cnn-points", type=int, default=11, help="grid side for the SmallCNN")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=70.0)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 11 x 11 MLP plane, 7 x 7 CNN plane")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.mlp_points, args.cnn_points, args.max_seconds = 3, 11, 7, 20.0
    C.setup_from(args)
    auto = resolve_workers("auto", torch.device("cpu"))
    default = f"workers {auto}, ppb 1, shortcut on"
    x, y = C.digits()
    print(f"Benchmark 3: points_per_batch x workers x first-layer shortcut, plane scans via run_scan on digits train "
          f"{tuple(x.shape)}, batch size {args.batch_size}\n{C.describe_machine()}\n")
    results = {"chunks": list(CHUNKS), "workers": sorted({1, auto}), "default": default, "batch_size": args.batch_size, "models": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in args.models:
            side = args.mlp_points if kind == "mlp" else args.cnn_points
            scan = PlaneScan(x_points=side, y_points=side, orthogonalize=False)
            model = C.build_model(kind, tuple(x.shape[1:]))
            theta = parameters_of(model)
            dirs = C.directions(theta, 2)
            modes = {"off": (0.0, False), "on": (512.0, False)}
            if kind == "cnn":
                modes["forced"] = (512.0, True)
            variants, reference = {}, None
            for workers in sorted({1, auto}, reverse=True):
                for mode, (mb, forced) in modes.items():
                    for ppb in CHUNKS:
                        key = f"workers {workers}, ppb {ppb}, shortcut {mode}"
                        variants[key] = variant(model, x, y, args.batch_size, theta, dirs, scan, mb, ppb, workers, forced,
                                                tmp / f"{kind}_{workers}_{mode}_{ppb}.npz")
            values = {k: f().values["train_loss"] for k, f in variants.items()}  # warm-up, and a consistency check
            reference = values[default]
            max_diff = {k: float(abs(v - reference).max() / abs(reference).max()) for k, v in values.items()}
            samples = C.interleaved(variants, repeats=args.repeats, min_seconds=1.0, max_seconds=args.max_seconds, warmup=0)
            status = C.shortcut_status(model, x, args.batch_size, theta, dirs, 512)
            entry = {"grid": [side, side], "shortcut_on_status": status, "rounds": len(samples[default]), "variants": {}}
            rows = []
            for key, times in samples.items():
                speed = C.paired_ratio(samples[default], times)
                entry["variants"][key] = {**C.summarize_samples({key: times})[key], "speed_vs_default": speed, "max_rel_diff_vs_default": max_diff[key]}
                rows.append([key, C.median(times), C.median(times) / side**2 * 1e3, f"{speed:.2f}x", f"{max_diff[key]:.1e}"])
            best = max(entry["variants"], key=lambda k: entry["variants"][k]["speed_vs_default"])
            entry["best"] = best
            print(f"## {kind}: {side} x {side} plane, shortcut on = {status}, {entry['rounds']} interleaved rounds")
            print(C.table(["setting", "s / plane", "ms / point", f"speed vs {default}", "max rel diff"], rows))
            print(f"fastest: {best} ({entry['variants'][best]['speed_vs_default']:.2f}x the default)\n")
            results["models"][kind] = entry
    path = C.write_results("scan_vmap", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
