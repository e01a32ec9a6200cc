"""Benchmark: a line scan over a streamed split vs the same scan resident, and vs Li et al.'s loop.

Setup. The digits training split (1,437 examples, 1x8x8), evaluation batch size 128 (12 batches per
point, so a streamed point really is a pass over a loader), the default SmallCNN and MLP (64, 64),
untrained, one filter-normalized Gaussian direction, a 21-point line. All variants run in this
process (``workers=1``: point workers would hide what streaming costs), interleaved (``_common.py``):

    resident            run_scan(LineScan(21), ...) on Evaluator(..., first_layer_mb=0): the split on
                        the device, a batch is a slice (the shortcut is off in all variants, since a
                        streamed split cannot use it)
    streamed            the same with residency=Residency(False): a DataLoader over the split, one pass
                        per point, with the CPU's default loader_workers=auto = 0 (loaded in this process)
    streamed, 2 loader workers   the same with 2 loader processes and prefetch 2 (a GPU's default)
    li eval_loss        Li et al. 2018's ``eval_loss`` as in their loss-landscape repository: per point,
                        write theta + a d into the model, model.eval(), loop over a
                        DataLoader(TensorDataset(x, y), batch_size, shuffle=False, num_workers=2) (their
                        default ``threads=2``), summing ``criterion(outputs, targets).item() * batch``
                        and the correct count under ``torch.no_grad``
    li eval_loss, in-process   the same loop with num_workers=0 (no worker start per point; for information)

Every variant computes loss and accuracy at the same 21 points. The script checks that streamed
and resident give identical arrays (bit for bit) and Li's loop the same numbers to float rounding.

How to read the output: seconds per scan, the ratio of each variant to ``resident`` and to
``li eval_loss`` (median of per-round ratios) and of the fastest samples.

    python benchmarks/streamed_scan.py [--quick] [--points 21] [--batch-size 128] [--models cnn mlp]
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

from losslandscape.landscape.batches import Residency  # noqa: E402
from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402
from losslandscape.landscape.scans import LineScan, run_scan  # noqa: E402

RESIDENCIES = {"resident": Residency(True), "streamed": Residency(False),
               "streamed, 2 loader workers": Residency(False, loader_workers=2)}


def li_eval_loss(model, theta, d, lambdas, loader) -> np.ndarray:
    """Li et al.'s per-point loop: set the weights, then ``eval_loss(net, criterion, loader)``."""
    values = []
    parameters = dict(model.named_parameters())
    for a in lambdas:
        with torch.no_grad():
            for name, p in parameters.items():
                p.copy_(theta[name] + float(a) * d[name])
        model.eval()
        total_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in loader:
                outputs = model(inputs)
                total_loss += F.cross_entropy(outputs, targets).item() * inputs.size(0)
                correct += torch.max(outputs, 1)[1].eq(targets).sum().item()
                total += inputs.size(0)
        values.append((total_loss / total, correct / total))
    with torch.no_grad():  # the model back at theta
        for name, p in parameters.items():
            p.copy_(theta[name])
    return np.asarray(values)


def variants(model, x, y, batch_size, theta, d, scan, tmp: Path, outputs: dict) -> dict:
    """Every variant: one whole scan; the last values of each are kept in ``outputs`` for the checks."""
    evaluators = {name: Evaluator(model, x, y, batch_size, first_layer_mb=0, residency=r) for name, r in RESIDENCIES.items()}
    dataset = torch.utils.data.TensorDataset(x, y)
    loaders = {"li eval_loss": torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=2),
               "li eval_loss, in-process": torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)}

    def ours(name):
        def run():
            result = run_scan(scan, theta, [d], {"train": evaluators[name]}, tmp / f"{name}.npz", progress=False)
            outputs[name] = np.stack([result.values["train_loss"], result.values["train_accuracy"]], axis=1)
            (tmp / f"{name}.npz").unlink()
        return run

    def li(name):
        def run():
            outputs[name] = li_eval_loss(model, theta, d, scan.coordinates()[:, 0], loaders[name])
        return run

    return {**{name: ours(name) for name in RESIDENCIES}, **{name: li(name) for name in loaders}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=21)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds at least")
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    parser.add_argument("--max-seconds", type=float, default=40.0, help="per model: start no new round after this")
    parser.add_argument("--quick", action="store_true", help="3 rounds (a smoke test)")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.max_seconds = 3, 10.0
    C.setup_from(args)
    x, y = C.digits()
    scan = LineScan(points=args.points)
    print(f"Streamed vs resident vs Li et al.'s eval_loss: {args.points}-point line scan; digits train {tuple(x.shape)}, "
          f"batch size {args.batch_size} ({-(-len(x) // args.batch_size)} batches per point)\n{C.describe_machine()}\n")
    results = {"points": args.points, "batch_size": args.batch_size, "models": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        for kind in args.models:
            started = time.perf_counter()
            model = C.build_model(kind, tuple(x.shape[1:]))
            theta = parameters_of(model)
            (d,) = C.directions(theta, 1)
            outputs: dict[str, np.ndarray] = {}
            samples = C.interleaved(variants(model, x, y, args.batch_size, theta, d, scan, Path(tmp_name), outputs),
                                    repeats=args.repeats, min_seconds=0.5, max_seconds=args.max_seconds)
            entry = {"parameters": sum(p.numel() for p in model.parameters()), "rounds": len(samples["resident"]),
                     "streamed_identical_to_resident": all(np.array_equal(outputs[n], outputs["resident"]) for n in RESIDENCIES),
                     "li_max_abs_difference": max(float(np.abs(outputs[n] - outputs["resident"]).max()) for n in outputs if n.startswith("li")),
                     "variants": {}}
            rows = []
            for name, times in samples.items():
                to_resident, to_li = C.paired_ratio(times, samples["resident"]), C.paired_ratio(times, samples["li eval_loss"])
                entry["variants"][name] = {**C.summarize_samples({name: times})[name], "ratio_to_resident": to_resident,
                                           "ratio_to_li_eval_loss": to_li,
                                           "ratio_of_minimums_to_resident": C.min_ratio(times, samples["resident"]),
                                           "ratio_of_minimums_to_li_eval_loss": C.min_ratio(times, samples["li eval_loss"])}
                rows.append([name, C.median(times) * 1e3, f"{to_resident:.3f}", f"{C.min_ratio(times, samples['resident']):.3f}",
                             f"{to_li:.3f}", f"{C.min_ratio(times, samples['li eval_loss']):.3f}"])
            entry["wall_s"] = time.perf_counter() - started
            results["models"][kind] = entry
            print(f"## {kind}: {entry['parameters']:,} parameters, {entry['rounds']} interleaved rounds; streamed == resident "
                  f"bit for bit: {entry['streamed_identical_to_resident']}; Li's loop within {entry['li_max_abs_difference']:.1e}")
            print(C.table(["variant", "ms / scan", "x resident", "(minimums)", "x li eval_loss", "(minimums)"], rows) + "\n")
    print(f"wrote {C.write_results('streamed_scan', results)}")


if __name__ == "__main__":
    main()
