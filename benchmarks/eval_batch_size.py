"""Benchmark: what one evaluation pass costs per example at each ``evaluation.batch_size``, on the CPU.

A scan's point is one pass over the split in batches of ``evaluation.batch_size`` (default 4096).
On a CPU the batch decides how large the activations of one forward pass are, and with them
whether the pass runs out of the caches or out of main memory; on a GPU a large batch fills the
device. Timed here: ``Evaluator.metrics_at`` (the exact scan path, one process, one point at a
time), seconds per 1,000 examples, for each model and batch size, interleaved rounds.

    digits-mlp    the MLP on the 1,437 digits (64 inputs)
    digits-cnn    the SmallCNN on the digits (1 x 8 x 8)
    cifar-cnn     the SmallCNN on 8,192 synthetic CIFAR-sized images (3 x 32 x 32)
    cifar-resnet  ResNet-20 at width 0.5 on 2,048 of them

Reported per model: seconds per 1,000 examples at each batch, the fastest batch, and the largest
activation of one example (the first layer's output), so that the fastest batch can be read as a
number of megabytes of activations per forward pass.

    python benchmarks/eval_batch_size.py [--threads 1] [--batches 32,64,128,256,512,1024,4096] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from losslandscape.landscape.batches import largest_activation_bytes  # noqa: E402
from losslandscape.landscape.evaluator import Evaluator, parameters_of  # noqa: E402


def models(quick: bool) -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    from losslandscape.models.resnet import ResNet20

    x, y = C.digits()
    generator = torch.Generator().manual_seed(0)
    cifar = torch.randn(2048 if quick else 8192, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (len(cifar),), generator=generator)
    torch.manual_seed(0)
    found = {
        "digits-mlp": (C.build_model("mlp", (1, 8, 8)), x, y),
        "digits-cnn": (C.build_model("cnn", (1, 8, 8)), x, y),
        "cifar-cnn": (C.build_model("cnn", (3, 32, 32)), cifar, labels),
        "cifar-resnet": (ResNet20((3, 32, 32), 10, width=0.5).eval(), cifar[:512 if quick else 2048], labels[:512 if quick else 2048]),
    }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="32,64,128,256,512,1024,4096")
    parser.add_argument("--models", default="digits-mlp,digits-cnn,cifar-cnn,cifar-resnet")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="eval_batch_size")
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_from(args)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"Evaluation batch size on the CPU\n{C.describe_machine()}\n")
    results, rows = {}, []
    for name, (model, x, y) in models(args.quick).items():
        if name not in args.models.split(","):
            continue
        theta = parameters_of(model)
        directions = C.directions(theta, 2)
        coordinates = torch.tensor([[0.1, -0.2]])
        variants = {}
        for batch in batches:
            evaluator = Evaluator(model, x, y, batch_size=batch, workers=1, first_layer_mb=0)
            variants[str(batch)] = lambda e=evaluator: e.metrics_at(theta, directions, coordinates)
        samples = C.interleaved(variants, repeats=2 if args.quick else 5, min_seconds=0.5, max_seconds=20 if args.quick else 90)
        per_thousand = {b: C.median(s) / len(x) * 1000 for b, s in samples.items()}
        fastest = min(per_thousand, key=per_thousand.get)
        activation = largest_activation_bytes(model, x[:1])  # of one example
        results[name] = {"examples": len(x), "largest_activation_bytes_per_example": activation,
                         "seconds_per_1000_examples": per_thousand, "fastest_batch": int(fastest),
                         "slowdown_of_4096_vs_fastest": per_thousand.get("4096", float("nan")) / per_thousand[fastest],
                         "samples": C.summarize_samples(samples)}
        rows.append([name, len(x), f"{activation / 1024:.1f} kB", *(per_thousand[str(b)] for b in batches), fastest,
                     f"{int(fastest) * activation / 2**20:.1f} MB"])
        print(rows[-1], flush=True)
    print(C.table(["model", "examples", "largest activation / example",
                   *(f"s / 1000 ex. @ {b}" for b in batches), "fastest batch", "its activation"], rows))
    print(f"wrote {C.write_results(args.name, {'threads': args.threads, 'batches': batches, 'models': results})}")


if __name__ == "__main__":
    main()
