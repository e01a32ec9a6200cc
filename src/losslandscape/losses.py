"""Losses (config group ``loss``): what a landscape is the landscape *of*.

Every measure (scans, mining, Hessian-vector products, training, mode connectivity) reads the loss
through one of these objects, so a regression or language model gets the same tools as a
classifier. A loss works on *sums*: :meth:`Loss.sums` returns ``[summed loss, summed metric]`` of a
batch and :meth:`Loss.units` how many units (examples, or counted tokens) those sums are over, so
batches combine exactly and the mean is ``total sum / total units`` whatever the batch size.

Each loss also checks, on one example batch and before any expensive work, that the model's
outputs and the data's targets fit it (:meth:`Loss.check`), with one line saying what would fit.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hydra.utils import get_method

from .errors import UserError


class LossError(UserError):
    """A loss that does not fit the model's outputs or the data's targets."""


class Loss:
    """The interface: ``sums``, ``units``, ``check``; ``name`` and ``metric`` label files and figures."""

    name = "loss"          # what the loss axis says, e.g. "cross-entropy loss"
    metric: str | None = None  # the second number of every point ("accuracy", "r2"), None when there is none
    class_major = False    # the scan engine may apply a final Linear class-major (plain cross-entropy only)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[summed loss, summed metric]`` of a batch (metric 0 when there is none)."""
        loss = self.summed(outputs, targets)
        return torch.stack([loss, self.summed_metric(outputs, targets) if self.metric else torch.zeros_like(loss)])

    def summed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.unit_losses(outputs, targets).sum()

    def summed_metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.unit_metrics(outputs, targets).sum()

    def unit_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of every unit of a batch, ``(units,)``: what standard errors are taken over."""
        raise NotImplementedError

    def unit_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sums_and_squares(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[summed loss, summed metric, summed squared loss, summed squared metric]`` over a batch's units.

        The first two are :meth:`sums`'s numbers, computed the same way (a scan's means keep them
        bit for bit); the squares give the standard errors (NaN where a loss gives sums only)."""
        # per-unit values only where the sums are their sums (a subclass may redefine summed alone)
        if type(self).summed is not Loss.summed or type(self).summed_metric is not Loss.summed_metric:
            sums = self.sums(outputs, targets)
            return torch.cat([sums, torch.full_like(sums, float("nan"))])
        return self._sums_of_units(outputs, targets)

    def _sums_of_units(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses = self.unit_losses(outputs, targets)
        metrics = self.unit_metrics(outputs, targets) if self.metric else torch.zeros_like(losses)
        # squares as (x * x).sum(), not torch.dot: BLAS's dot rounds by where x lies in memory, which
        # differs between processes, and a resumed scan must match an uninterrupted one bit for bit
        return torch.stack([losses.sum(), metrics.sum(), (losses * losses).sum(), (metrics * metrics).sum()])

    def units(self, targets: torch.Tensor) -> int:
        """How many units a batch's sums are over: its examples, unless the loss counts otherwise."""
        return len(targets)

    def mean(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of one batch: the differentiable quantity of training and mining."""
        return self.summed(outputs, targets) / max(self.units(targets), 1)

    def for_split(self, targets: torch.Tensor) -> "Loss":
        """This loss with whatever it needs to know about a split's targets (R^2 needs their variance)."""
        return self

    def check(self, outputs: Any, targets: torch.Tensor, num_classes: int | None) -> None:
        """Raise :class:`LossError` when a model's outputs on a few examples do not fit the targets."""
        if not isinstance(outputs, torch.Tensor):
            raise LossError(f"the model returns {type(outputs).__name__}, but the {self.name} needs a tensor; "
                            "wrap the model so that forward returns its predictions (model=hf does this for transformers)")
        if outputs.shape[0] != targets.shape[0]:
            raise LossError(f"the model returns {outputs.shape[0]} outputs for {targets.shape[0]} examples")

    def summary(self, means: dict[str, float]) -> dict[str, float]:
        """Extra headline numbers derived from a split's mean loss and metric (perplexity, ...)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "type": type(self).__name__}


class CrossEntropy(Loss):
    """Classification: ``(N, C)`` logits and ``(N,)`` class indices; metric: accuracy."""

    name = "cross-entropy loss"
    metric = "accuracy"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise LossError(f"loss.label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.class_major = self.label_smoothing == 0.0

    def summed(self, outputs, targets):
        if self.label_smoothing:
            return F.cross_entropy(outputs, targets, reduction="sum", label_smoothing=self.label_smoothing)
        return self.unit_losses(outputs, targets).sum()

    def unit_losses(self, outputs, targets):
        if self.label_smoothing:
            return F.cross_entropy(outputs, targets, reduction="none", label_smoothing=self.label_smoothing)
        # logsumexp minus the true logit: the same number as F.cross_entropy(reduction="none"), and
        # PyTorch's CPU log_softmax is about twice as slow for the few classes of a classifier
        return torch.logsumexp(outputs, dim=1) - outputs.gather(1, targets[:, None]).squeeze(1)

    def summed_metric(self, outputs, targets):
        return (outputs.max(dim=1).indices == targets).sum(dtype=outputs.dtype)  # = argmax, a faster CPU kernel

    def unit_metrics(self, outputs, targets):
        return (outputs.max(dim=1).indices == targets).to(outputs.dtype)

    def sums_and_squares(self, outputs, targets):
        if self.label_smoothing:  # F.cross_entropy's summed reduction: kept, its squares from the unreduced one
            sums, losses = self.sums(outputs, targets), self.unit_losses(outputs, targets)
            return torch.cat([sums, (losses * losses).sum()[None], sums[1:]])
        return self._sums_of_units(outputs, targets)  # its sums: the same numbers as summed and summed_metric

    def check(self, outputs, targets, num_classes):
        super().check(outputs, targets, num_classes)
        if outputs.dim() != 2 or targets.dim() != 1 or targets.dtype.is_floating_point:
            raise LossError(f"loss=cross_entropy needs (N, classes) logits and (N,) class indices, got outputs "
                            f"{tuple(outputs.shape)} and targets {tuple(targets.shape)} {targets.dtype}; "
                            "for regression use loss=mse, for multi-label loss=bce, for sequences loss=token_cross_entropy")
        if targets.numel() and int(targets.max()) >= outputs.shape[1]:
            raise LossError(f"the model gives {outputs.shape[1]} logits but the targets go up to class {int(targets.max())}")

    def describe(self):
        return {**super().describe(), "label_smoothing": self.label_smoothing}


class TokenCrossEntropy(Loss):
    """Sequence models: ``(N, T, V)`` logits, ``(N, T)`` next-token targets; targets equal to
    ``ignore_index`` count nowhere. The mean is per counted token; metric: token accuracy."""

    name = "token cross-entropy loss"
    metric = "accuracy"

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = int(ignore_index)

    def summed(self, outputs, targets):
        return F.cross_entropy(outputs.flatten(0, -2), targets.flatten(), ignore_index=self.ignore_index, reduction="sum")

    def summed_metric(self, outputs, targets):
        counted = targets != self.ignore_index
        return ((outputs.max(dim=-1).indices == targets) & counted).sum(dtype=outputs.dtype)

    def sums_and_squares(self, outputs, targets):
        # the units are counted tokens; F.cross_entropy's summed reduction is kept for the means
        sums = self.sums(outputs, targets)
        losses = F.cross_entropy(outputs.flatten(0, -2), targets.flatten(), ignore_index=self.ignore_index, reduction="none")
        return torch.cat([sums, (losses * losses).sum()[None], sums[1:]])  # 0/1 accuracy: its square is itself

    def units(self, targets):
        return int((targets != self.ignore_index).sum())

    def check(self, outputs, targets, num_classes):
        super().check(outputs, targets, num_classes)
        if outputs.dim() != 3 or targets.shape != outputs.shape[:2]:
            raise LossError(f"loss=token_cross_entropy needs (N, T, vocab) logits and (N, T) token targets, got outputs "
                            f"{tuple(outputs.shape)} and targets {tuple(targets.shape)}")
        counted = targets[targets != self.ignore_index]
        if counted.numel() and int(counted.max()) >= outputs.shape[-1]:
            raise LossError(f"the model's vocabulary has {outputs.shape[-1]} tokens but the targets go up to token "
                            f"{int(counted.max())}; give the model the data's vocabulary size")

    def summary(self, means):
        return {"perplexity": math.exp(means["loss"])}

    def describe(self):
        return {**super().describe(), "ignore_index": self.ignore_index}


class MeanSquaredError(Loss):
    """Regression: per example the mean over output dimensions of the squared error (so the mean
    over examples is ``F.mse_loss``); metric ``r2`` (1 - MSE / variance of the split's targets) or none."""

    name = "mean squared error"

    def __init__(self, metric: str | None = "r2", target_variance: torch.Tensor | None = None):
        if metric not in ("r2", None):
            raise LossError(f"loss.metric for mse must be r2 or null, got {metric!r}")
        self.metric = metric
        self.target_variance = target_variance

    def unit_losses(self, outputs, targets):
        return (outputs - targets.reshape(outputs.shape)).square().flatten(1).mean(dim=1)

    def unit_metrics(self, outputs, targets):
        # per example 1 - e_i^2 / var, averaged over outputs: its mean over a split is that split's R^2
        error = (outputs - targets.reshape(outputs.shape)).square().flatten(1)
        return (1.0 - error / self.target_variance.to(error)).mean(dim=1)

    def for_split(self, targets):
        if self.metric is None:
            return self
        flat = targets.reshape(len(targets), -1).double()
        variance = flat.var(dim=0, correction=0)
        return MeanSquaredError(self.metric, torch.where(variance > 0, variance, torch.ones_like(variance)))

    def check(self, outputs, targets, num_classes):
        super().check(outputs, targets, num_classes)
        if outputs.numel() != targets.numel() or not targets.dtype.is_floating_point:
            raise LossError(f"loss=mse needs float targets with one value per output, got outputs {tuple(outputs.shape)} "
                            f"and targets {tuple(targets.shape)} {targets.dtype}; for class indices use loss=cross_entropy")



class BinaryCrossEntropy(Loss):
    """Multi-label: ``(N, K)`` logits and ``(N, K)`` 0/1 targets; per example the mean over labels of
    the binary cross-entropy with logits; metric: mean accuracy of the outputs thresholded at 0."""

    name = "binary cross-entropy loss"
    metric = "accuracy"

    def unit_losses(self, outputs, targets):
        per_label = F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype), reduction="none")
        return per_label.flatten(1).mean(dim=1)

    def unit_metrics(self, outputs, targets):
        return ((outputs > 0) == (targets > 0.5)).to(outputs.dtype).flatten(1).mean(dim=1)

    def check(self, outputs, targets, num_classes):
        super().check(outputs, targets, num_classes)
        if outputs.shape != targets.shape:
            raise LossError(f"loss=bce needs one target per output, got outputs {tuple(outputs.shape)} and targets "
                            f"{tuple(targets.shape)}")
        if targets.numel() and not bool(((targets == 0) | (targets == 1)).all()):
            raise LossError("loss=bce needs targets of 0 and 1")


class CallableLoss(Loss):
    """The user's own ``(outputs, targets) -> summed loss`` (and optional ``(outputs, targets) ->
    summed metric``), given as importable names, e.g. ``loss.fn=my_losses.huber_sum``."""

    def __init__(self, fn: str | Callable, metric_fn: str | Callable | None = None, metric: str | None = None,
                 name: str | None = None):
        self.fn = _callable(fn, "loss.fn")
        self.metric_fn = None if metric_fn is None else _callable(metric_fn, "loss.metric_fn")
        self.metric = (metric or "metric") if self.metric_fn is not None else None
        self.name = name or f"{getattr(self.fn, '__name__', 'custom')} loss"

    def summed(self, outputs, targets):
        return self.fn(outputs, targets)

    def summed_metric(self, outputs, targets):
        return torch.as_tensor(self.metric_fn(outputs, targets), dtype=outputs.dtype, device=outputs.device)

    def check(self, outputs, targets, num_classes):
        super().check(outputs, targets, num_classes)
        try:
            value = self.fn(outputs, targets)
        except Exception as error:  # the user's code: say where it failed, in one line
            raise LossError(f"{self.name} fails on the model's outputs {tuple(outputs.shape)} and targets "
                            f"{tuple(targets.shape)}: {type(error).__name__}: {error}") from error
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise LossError(f"{self.name} must return the summed loss as a scalar tensor, got {value!r:.80}")

    def describe(self):
        # which functions: a result of one user loss is never taken for another's of the same name
        named = {key: f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
                 for key, f in (("fn", self.fn), ("metric_fn", self.metric_fn)) if f is not None}
        return {**super().describe(), **named}


def _callable(value: str | Callable, key: str) -> Callable:
    if callable(value):
        return value
    try:
        return get_method(str(value))
    except Exception as error:
        raise LossError(f"{key}={value!r} does not name an importable function: {error}") from error


def as_loss(value: Any) -> Loss:
    """A :class:`Loss` from a loss object, a config-built object or a plain callable ``(outputs, targets) -> sum``."""
    if value is None:
        return CrossEntropy()
    if isinstance(value, Loss):
        return value
    if isinstance(value, str) or callable(value):
        return CallableLoss(value)
    raise LossError(f"a loss must be a losslandscape.losses.Loss or a callable (outputs, targets) -> summed loss, got {value!r:.80}")
