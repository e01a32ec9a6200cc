"""The classifier's last layer applied class-major, with the loss and accuracy read from its output.

A scan needs only two numbers per point from the logits: the summed cross-entropy and the
correct count, both reductions over the few classes of every example. Row-major logits
``(examples, classes)`` make those reductions short inner loops, and a GEMM with 10 output
columns is a poor shape for BLAS: on the MLP of the benchmarks the last ``Linear`` and the
reductions cost as much as the hidden layer. So where the model returns the output of a final
``Linear``, that layer is replaced by an identity during a scan and applied here as
``W @ features^T + b``, giving ``(classes, examples)`` logits whose per-example reductions run
along contiguous memory (on 1,437 x 64 features: the GEMM 90 -> 32 us, logsumexp 46 -> 24 us;
benchmarks/README.md). The numbers are the same as the model's own, to float rounding.
"""

from __future__ import annotations

from typing import ContextManager

import torch

from .first_layer import replaced


def last_layer(model: torch.nn.Module, example: torch.Tensor) -> str | None:
    """Name of the ``nn.Linear`` submodule whose output the model returns unchanged, if it runs exactly
    once on a ``(batch, features)`` input; else ``None`` (the evaluator then reads the model's logits)."""
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(lambda m, args, out, name=name: calls.append((name, args[0], out.clone())))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            result = model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not calls or not isinstance(result, torch.Tensor):
        return None
    name, layer_input, output = calls[-1]
    returned_unchanged = output.shape == result.shape and torch.equal(output, result)
    if not name or not returned_unchanged or layer_input.dim() != 2 or [c[0] for c in calls].count(name) != 1:
        return None
    return name


class ClassMajorHead:
    """The last ``Linear`` of ``model``: replaced by an identity while installed, applied class-major by
    :meth:`summed_metrics`. Its parameters are read at call time, so a moved model is seen at its point."""

    def __init__(self, model: torch.nn.Module, name: str):
        self.model, self.name = model, name
        self.layer = model.get_submodule(name)

    @classmethod
    def build(cls, model: torch.nn.Module, example: torch.Tensor) -> "ClassMajorHead | None":
        name = last_layer(model, example)
        return None if name is None else cls(model, name)

    def installed(self) -> ContextManager[None]:
        """Within the block the model returns the features the last layer would have read."""
        return replaced(self.model, self.name, torch.nn.Identity())

    def summed_metrics(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[summed cross-entropy, correct count]`` of the examples whose features are given."""
        logits = self._logits(features)
        true_logits = logits.gather(0, labels[None, :]).sum()
        return torch.stack([torch.logsumexp(logits, dim=0).sum() - true_logits, self._correct(logits, labels)])

    def sums_and_squares(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`summed_metrics` (the same numbers) and the summed squares of the per-example loss and
        correctness (:meth:`losslandscape.losses.Loss.sums_and_squares`)."""
        logits = self._logits(features)
        true_logits, log_normalizers = logits.gather(0, labels[None, :]), torch.logsumexp(logits, dim=0)
        losses, correct = log_normalizers - true_logits[0], self._correct(logits, labels)
        # (losses * losses).sum(), not torch.dot (alignment-dependent rounding: see Loss._sums_of_units)
        return torch.stack([log_normalizers.sum() - true_logits.sum(), correct, (losses * losses).sum(), correct])

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        weight, bias = self.layer.weight, self.layer.bias
        return torch.mm(weight, features.T) if bias is None else torch.addmm(bias[:, None], weight, features.T)

    @staticmethod
    def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # max(...).indices is argmax (the first maximum); argmax(dim=0) itself is a slow CPU kernel (14x here)
        return (logits.max(dim=0).indices == labels).sum(dtype=logits.dtype)
