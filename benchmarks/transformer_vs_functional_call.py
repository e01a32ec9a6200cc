"""Benchmark 7: a tiny GPT-2 (Hugging Face transformers, random weights) under the token loss.

Setup. GPT-2 with 2 layers, width 64, 4 heads, vocabulary 96, context 32 (about 110,000
parameters; ``model=hf`` built from a config, no download), 128 random token sequences of 32
tokens (4,096 counted tokens), ``loss=token_cross_entropy``, two filter-normalized Gaussian
directions. Both sides compute the same numbers; timed interleaved in one process (``_common.py``):

    plane/ours           losslandscape.scan(..., directions=2, grid=(G, G)): the evaluator's engine
                         (moved copy; the first-layer and class-major shortcuts do not apply to an
                         embedding and a 3-D head, and say so by falling back), in this process
    plane/plain          the plain loop a user writes: for every grid point, theta + a d1 + b d2 as a
                         parameter dict, ``functional_call`` under inference mode, F.cross_entropy
    top-5/ours           losslandscape.hessian(..., top_k=5, tol=1e-3) in float32 (Lanczos)
    top-5/plain          scipy's eigsh (ARPACK Lanczos, top 5 algebraic) on double-backward HVPs of the
                         same loss through ``functional_call``, to the same 1e-3 tolerance

Goal: no slower than the plain loop on the plane (ratio <= 1.0, the engine's bookkeeping is free
where its shortcuts do not apply) and fewer HVPs and less time for the top-5 eigenvalues.

    python benchmarks/transformer_vs_functional_call.py [--quick] [--grid 7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import losslandscape as ll  # noqa: E402
from losslandscape.landscape.evaluator import parameters_of  # noqa: E402
from losslandscape.losses import TokenCrossEntropy  # noqa: E402
from losslandscape.models.hf import build_hf_model  # noqa: E402

VOCAB, CONTEXT = 96, 32


def tiny_gpt2(layers: int, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_hf_model("causal_lm", architecture="gpt2", num_classes=VOCAB, config={
        "n_layer": layers, "n_embd": width, "n_head": 4, "n_positions": CONTEXT, "bos_token_id": 0, "eos_token_id": 0})


def plain_plane(model, x, y, theta, d1, d2, grid: int) -> torch.Tensor:
    """What a user writes without the tool: a parameter dict and functional_call per grid point."""
    buffers = dict(model.named_buffers())
    axis = torch.linspace(-1, 1, grid)
    losses = torch.empty(grid, grid)
    with torch.inference_mode():
        for j, b in enumerate(axis):
            for i, a in enumerate(axis):
                params = {n: theta[n] + a * d1[n] + b * d2[n] for n in theta}
                logits = functional_call(model, {**params, **buffers}, (x,), tie_weights=True)
                losses[j, i] = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
    return losses


def plain_eigsh_top5(model, x, y, theta, tol: float = 1e-3) -> tuple[list[float], int]:
    """The usual hand-made route: double-backward HVPs through ``functional_call`` wrapped in a scipy
    LinearOperator, top 5 algebraic eigenvalues by ARPACK's Lanczos (``eigsh``), products counted."""
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    names = list(theta)
    params = [theta[n].detach().clone().requires_grad_(True) for n in names]
    sizes = [p.numel() for p in params]
    products = 0

    def hvp(vector: np.ndarray) -> np.ndarray:
        nonlocal products
        products += 1
        logits = functional_call(model, dict(zip(names, params)), (x,), tie_weights=True)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        grads = torch.autograd.grad(loss, params, create_graph=True)
        v = [t.view_as(p) for t, p in zip(torch.from_numpy(vector.astype(np.float32).ravel()).split(sizes), params)]
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, v)]).numpy()

    operator = LinearOperator((sum(sizes), sum(sizes)), matvec=hvp, dtype=np.float32)
    values = eigsh(operator, k=5, which="LA", tol=tol, return_eigenvectors=False)
    return sorted(values.tolist(), reverse=True), products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a 3 x 3 plane, 2 rounds, 64 sequences (a smoke test)")
    C.add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.grid, args.repeats, args.examples = 3, 2, 64
    C.setup_from(args)
    model = tiny_gpt2(args.layers, args.width)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (args.examples, CONTEXT + 1), generator=generator)
    x, y = tokens[:, :-1], tokens[:, 1:]
    theta = parameters_of(model)
    d1, d2 = ll.random_directions(model, 2)
    parameters = sum(v.numel() for v in theta.values())
    print(f"Benchmark 7: tiny GPT-2 ({args.layers} layers, width {args.width}, {parameters:,} parameters), "
          f"{args.examples} x {CONTEXT} tokens\n{C.describe_machine()}\n")

    ours = ll.scan(model, (x, y), loss=TokenCrossEntropy(), directions=[d1, d2], grid=(args.grid, args.grid))
    # the API orthogonalizes d2 against d1: the plain loop scans the same two directions
    from losslandscape.directions.normalization import orthogonalize

    plain = plain_plane(model, x, y, theta, d1, orthogonalize(d2, d1), args.grid)
    agreement = float((torch.from_numpy(ours.values["train_loss"]).float() - plain).abs().max())
    samples = C.interleaved({
        "plane/ours": lambda: ll.scan(model, (x, y), loss=TokenCrossEntropy(), directions=[d1, d2], grid=(args.grid, args.grid)),
        "plane/plain": lambda: plain_plane(model, x, y, theta, d1, orthogonalize(d2, d1), args.grid),
    }, repeats=args.repeats, min_seconds=0.5, max_seconds=120.0)
    plane_ratio = C.paired_ratio(samples["plane/ours"], samples["plane/plain"])

    started = time.perf_counter()
    spectrum = ll.hessian(model, (x, y), loss=TokenCrossEntropy(), top_k=5, tol=1e-3, dtype=torch.float32)
    ours_hessian_s = time.perf_counter() - started
    started = time.perf_counter()
    power_values, power_products = plain_eigsh_top5(model, x, y, theta)
    plain_hessian_s = time.perf_counter() - started

    rows = [["plane/ours", C.median(samples["plane/ours"]), f"{plane_ratio:.3f}"],
            ["plane/plain", C.median(samples["plane/plain"]), "1.000"],
            ["top-5/ours (Lanczos)", ours_hessian_s, f"{ours_hessian_s / plain_hessian_s:.3f}"],
            ["top-5/plain (eigsh)", plain_hessian_s, "1.000"]]
    print(C.table(["variant", "seconds", "x plain"], rows))
    print(f"plane: max |ours - plain| = {agreement:.2e}; top-5 HVPs: ours {spectrum['num_products']}, plain {power_products}")
    print(f"top-5 ours  {[round(v, 4) for v in spectrum['top_eigenvalues']]}\ntop-5 plain {[round(v, 4) for v in power_values]}")
    results = {
        "model": {"layers": args.layers, "width": args.width, "parameters": parameters, "examples": args.examples, "context": CONTEXT},
        "grid": args.grid, "plane": {**C.summarize_samples(samples), "ratio_ours_to_plain": plane_ratio, "max_abs_difference": agreement},
        "hessian_top5": {"ours_s": ours_hessian_s, "plain_s": plain_hessian_s, "ours_products": spectrum["num_products"],
                         "plain_products": power_products, "ours": spectrum["top_eigenvalues"], "plain": power_values},
        "goal": "plane ratio <= 1.0; top-5 fewer HVPs and less time than plain HVPs under eigsh",
        "goal_met": plane_ratio <= 1.0 and spectrum["num_products"] < power_products and ours_hessian_s < plain_hessian_s,
    }
    print(f"wrote {C.write_results('transformer_vs_functional_call', results)}")


if __name__ == "__main__":
    main()
