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

The terms are made afresh for every product (:class:`LossTerms` is iterated once per product): a
streamed split cannot keep its batches, so each product is one pass over its loader, a term per
fetched run of batches; a resident split's terms are slices, the same batches either way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch

ParamDict = dict[str, torch.Tensor]


LossTerm = Callable[[ParamDict], torch.Tensor]


def batched_loss_terms(evaluator, theta: ParamDict, batches_per_term: int | None = 1) -> LossTerms | list[LossTerm]:
    """Functions of a parameter dict whose sum is ``evaluator.loss``, each covering ``batches_per_term`` batches."""
    base = _with_fixed_statistics(evaluator, theta)
    if batches_per_term is None:
        return [base.loss]
    if int(batches_per_term) < 1:
        raise ValueError(f"batches_per_term must be a positive integer or None, got {batches_per_term}")
    return LossTerms(base, int(batches_per_term))


class LossTerms:
    """The terms of ``base.loss``, ``batches_per_term`` evaluation batches each, made at every iteration."""

    def __init__(self, base, batches_per_term: int):
        self.base, self.batches_per_term = base, batches_per_term

    def __len__(self) -> int:
        return -(-len(self.base) // (self.batches_per_term * self.base.batch_size))

    def __iter__(self) -> Iterator[LossTerm]:
        for part in self.base.data.parts(self.batches_per_term):
            yield _weighted(_restricted(self.base, part), self.base.units)


def _with_fixed_statistics(evaluator, theta: ParamDict):
    if evaluator.bn_mode != "recompute":
        return evaluator
    fixed = copy.copy(evaluator)
    with torch.no_grad():
        fixed.buffers = {n: b.detach() for n, b in evaluator.recomputed_buffers(theta).items()}
    fixed.bn_mode = "eval"
    return fixed


def _restricted(evaluator, data):
    part = copy.copy(evaluator)  # shares the model and buffers; only the data differs
    part.data = data
    part.units = evaluator.criterion.units(data.y)
    return part


def _weighted(part, total: int) -> LossTerm:
    weight = part.units / total

    def term(params: ParamDict) -> torch.Tensor:
        return part.loss(params) * weight

    return term
