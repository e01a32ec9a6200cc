"""The whole-split loss as a sum of per-batch terms, each still computed by ``Evaluator.loss``.

``Evaluator.loss`` is the mean over the split's N units (examples, or counted tokens), summed batch
by batch. Restricting a shallow copy of the evaluator to a slice of ``n`` units gives the mean over
that slice; weighted by ``n / N`` the slices add up to the whole-split loss exactly, and so do their Hessian-vector products. The
slices are whole multiples of the evaluator's batch size, so with ``bn_mode="train"`` every
BatchNorm batch (and its batch statistics) is the same as in the whole-split evaluation.

``bn_mode="recompute"`` re-estimates the running statistics at the evaluated point with in-place
buffer updates that autograd does not track, so its Hessian is the Hessian at *fixed* statistics.
The HVP is always taken at theta, so the terms estimate the statistics once at theta and then
evaluate in eval mode with them: the same function, without re-estimating per product and term.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

ParamDict = dict[str, torch.Tensor]


LossTerm = Callable[[ParamDict], torch.Tensor]


def batched_loss_terms(evaluator, theta: ParamDict, batches_per_term: int | None = 1) -> list[LossTerm]:
    """Functions of a parameter dict whose sum is ``evaluator.loss``, each covering ``batches_per_term`` batches."""
    base = _with_fixed_statistics(evaluator, theta)
    if batches_per_term is None:
        return [base.loss]
    if int(batches_per_term) < 1:
        raise ValueError(f"batches_per_term must be a positive integer or None, got {batches_per_term}")
    span = int(batches_per_term) * base.batch_size
    return [_weighted(_restricted(base, start, start + span), base.units) for start in range(0, len(base.y), span)]


def _with_fixed_statistics(evaluator, theta: ParamDict):
    if evaluator.bn_mode != "recompute":
        return evaluator
    fixed = copy.copy(evaluator)
    with torch.no_grad():
        fixed.buffers = {n: b.detach() for n, b in evaluator.recomputed_buffers(theta).items()}
    fixed.bn_mode = "eval"
    return fixed


def _restricted(evaluator, start: int, stop: int):
    part = copy.copy(evaluator)  # shares the model and buffers; only the data slice differs
    part.x, part.y = evaluator.x[start:stop], evaluator.y[start:stop]
    part.units = evaluator.criterion.units(part.y)
    return part


def _weighted(part, total: int) -> LossTerm:
    weight = part.units / total

    def term(params: ParamDict) -> torch.Tensor:
        return part.loss(params) * weight

    return term
