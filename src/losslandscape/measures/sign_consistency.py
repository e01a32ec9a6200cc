"""Sign consistency and valley asymmetry (Li et al. 2024, "Exploring and Exploiting the Asymmetric
Valley of Deep Neural Networks", arXiv:2405.12489; DESIGN.md section 4).

The paper's observation: a 1D curve ``L(theta + lambda d)`` is flatter on the side where the noise
``d`` agrees in sign with ``theta`` (lambda > 0 when ``d`` is sign-consistent), and the degree of
sign agreement between two models predicts how well they interpolate. Both measures are plain
functions of parameter dicts and of sampled curves, so they are tested on hand-built inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

ParamDict = dict[str, torch.Tensor]


def _agreeing(a: torch.Tensor, b: torch.Tensor) -> int:
    """Entries where ``sign(a) == sign(b)``; ``sign(0) = 0``, so a zero agrees only with a zero."""
    return int((torch.sign(a.detach()) == torch.sign(b.detach().to(a.device))).sum())


def _names(a: ParamDict, b: ParamDict, names: Iterable[str] | None) -> list[str]:
    chosen = sorted(a) if names is None else list(names)
    missing = [n for n in chosen if n not in a or n not in b]
    if missing:
        raise ValueError(f"sign consistency needs both models to have the same parameters; missing {missing[:3]}")
    for n in chosen:
        if a[n].shape != b[n].shape:
            raise ValueError(f"parameter {n} has shape {tuple(a[n].shape)} in one model and {tuple(b[n].shape)} in the other")
    if not chosen or sum(a[n].numel() for n in chosen) == 0:
        raise ValueError("sign consistency over no coordinates is undefined: select at least one non-empty parameter")
    return chosen


def sign_consistency(a: ParamDict, b: ParamDict, names: Iterable[str] | None = None) -> float:
    """SSR(a, b): the fraction of coordinates (over ``names``, default all) where the signs agree.

    1 for a model with itself, 0 with its negation (where no entry is 0), about 1/2 against
    independent symmetric noise. Counted in integers, so the ratio is exact.
    """
    chosen = _names(a, b, names)
    agree = sum(_agreeing(a[n], b[n]) for n in chosen)
    return agree / sum(a[n].numel() for n in chosen)


def sign_consistency_per_tensor(a: ParamDict, b: ParamDict, names: Iterable[str] | None = None) -> dict[str, float]:
    """SSR of every parameter tensor (a layer's weight, a bias, ...) on its own."""
    return {n: _agreeing(a[n], b[n]) / a[n].numel() for n in _names(a, b, names) if a[n].numel()}


def sign_consistency_report(a: ParamDict, b: ParamDict, names: Iterable[str] | None = None) -> dict:
    """Overall and per-tensor SSR with the number of coordinates they are taken over (JSON-ready)."""
    chosen = _names(a, b, names)
    return {
        "overall": sign_consistency(a, b, chosen),
        "per_tensor": sign_consistency_per_tensor(a, b, chosen),
        "coordinates": int(sum(a[n].numel() for n in chosen)),
    }


def perturbed_names(direction: ParamDict) -> list[str]:
    """The tensors a direction actually moves (biases and BatchNorm under ``bias_bn=ignore`` are zero):
    the SSR between a direction and theta is taken over these, as the sign-consistent noise is built there."""
    return [n for n, v in sorted(direction.items()) if bool((v != 0).any())]


def valley_asymmetry(lambdas: np.ndarray, values: np.ndarray) -> float:
    """Mean of the curve over ``lambda > 0`` minus its mean over ``lambda < 0`` (0 itself excluded).

    With a sign-consistent direction, ``lambda > 0`` is the sign-consistent side, so a negative
    number means the valley is flatter (lower) there. An even curve gives 0 on a symmetric grid;
    ``a lambda^2 + c lambda`` gives ``2 c mean(lambda > 0)``. A non-finite value on either side makes
    the result non-finite (a diverged point is reported, not hidden).
    """
    lambdas, values = np.asarray(lambdas, dtype=float), np.asarray(values, dtype=float)
    if lambdas.shape != values.shape or lambdas.ndim != 1:
        raise ValueError(f"valley_asymmetry needs one value per lambda, got shapes {lambdas.shape} and {values.shape}")
    right, left = values[lambdas > 0], values[lambdas < 0]
    if not len(right) or not len(left):
        raise ValueError("valley asymmetry needs grid points on both sides of lambda = 0; use a span like [-1, 1]")
    return float(right.mean() - left.mean())
