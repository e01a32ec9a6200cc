"""The Hessian of a loss over parameter dicts, as a linear operator on flat vectors.

One small abstraction in the spirit of curvlinops (f-dangel/curvlinops): an operator knows its
``dim``, ``dtype`` and ``device``, multiplies flat vectors with ``matvec`` and counts its products.
Every estimator of this package (Lanczos, power iteration, Hutchinson, Hutch++, SLQ) only ever
calls ``matvec``, so they run unchanged on a dense test matrix (:class:`DenseOperator`).

Hessian-vector products differentiate through the project's one evaluator (``Evaluator.loss``),
never through a second evaluation loop:

- ``mode="reverse"``: double backward (Pearlmutter 1994): ``grad(<grad L, v>)`` with ``create_graph``;
- ``mode="forward"``: forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``; the same
  numbers, usually less memory because no second graph over the gradient is built.

Memory: a double backward of the whole-split loss keeps the graphs of *all* evaluation batches
alive at once. The loss is a weighted sum of per-batch terms, so its HVP is the sum of the terms'
HVPs; :meth:`HessianOperator.from_evaluator` therefore splits the loss into terms (one per
evaluation batch by default, see :mod:`.loss_terms`) and differentiates them one after another,
so that at most one batch's graph is alive. Passing a plain ``loss_fn`` uses it as one term.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad, jvp

from .loss_terms import LossTerms, batched_loss_terms

ParamDict = dict[str, torch.Tensor]
LossFn = Callable[[ParamDict], torch.Tensor]

HVP_MODES = ("reverse", "forward")


@dataclass(frozen=True)
class ParameterLayout:
    """Where each named tensor lives in a flat vector: the bridge between dicts and vectors."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, params: ParamDict, names: Sequence[str] | None = None) -> ParameterLayout:
        names = tuple(params) if names is None else tuple(names)
        return cls(names, tuple(params[n].shape for n in names))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(s.numel() for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def flatten(self, params: ParamDict) -> torch.Tensor:
        """The tensors named in the layout, concatenated in its order (other keys are ignored)."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"parameter dict lacks {missing[:5]} (the layout needs {len(self.names)} names)")
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def unflatten(self, vector: torch.Tensor) -> ParamDict:
        if vector.numel() != self.dim:
            raise ValueError(f"vector of length {vector.numel()} does not fit a layout of dimension {self.dim}")
        return {n: t.view(s) for n, t, s in zip(self.names, vector.split(self.sizes), self.shapes)}


def flatten_params(params: ParamDict, names: Sequence[str] | None = None) -> torch.Tensor:
    return ParameterLayout.of(params, names).flatten(params)


def unflatten_vector(vector: torch.Tensor, like: ParamDict, names: Sequence[str] | None = None) -> ParamDict:
    return ParameterLayout.of(like, names).unflatten(vector)


def weight_names(theta: ParamDict) -> list[str]:
    """The "weights only" subset: tensors with more than one dimension (no biases, no BN affine)."""
    return [name for name, value in theta.items() if value.dim() > 1]


def names_with_prefix(theta: ParamDict, prefix: str) -> list[str]:
    """One layer (or block) of a model, e.g. ``names_with_prefix(theta, "features.0.")``."""
    return [name for name in theta if name.startswith(prefix)]


class LinearOperator:
    """A symmetric linear operator on flat vectors that counts its matrix-vector products."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __init__(self) -> None:
        self.num_products = 0

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        self.num_products += 1
        return self._matvec(vector.to(device=self.device, dtype=self.dtype))

    def _matvec(self, vector: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __matmul__(self, vector: torch.Tensor) -> torch.Tensor:
        return self.matvec(vector)


class DenseOperator(LinearOperator):
    """An explicit symmetric matrix: the exact reference for tests and benchmarks."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a dense operator needs a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim, self.dtype, self.device = matrix.shape[0], matrix.dtype, matrix.device

    def _matvec(self, vector: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vector


class HessianOperator(LinearOperator):
    """The Hessian at ``theta`` of ``loss_fn`` restricted to the parameters ``names``.

    ``loss_fn`` maps a full parameter dict to a scalar, or is a sequence of such functions whose
    sum is the loss, or :class:`~.loss_terms.LossTerms` that makes them afresh for every product
    (a streamed split); the HVP is then accumulated term by term to bound memory. Parameters outside
    ``names`` stay fixed at theta: the operator is the principal submatrix ``H[names, names]``.
    The dtype and device follow theta (float64 theta gives float64 products).
    """

    def __init__(
        self,
        loss_fn: LossFn | Sequence[LossFn],
        theta: ParamDict,
        names: Sequence[str] | None = None,
        mode: str = "reverse",
    ):
        super().__init__()
        if mode not in HVP_MODES:
            raise ValueError(f"unknown HVP mode {mode!r}: expected one of {', '.join(HVP_MODES)}")
        self.mode = mode
        self.terms = loss_fn if isinstance(loss_fn, LossTerms) else list(loss_fn) if isinstance(loss_fn, Sequence) else [loss_fn]
        if len(self.terms) == 0:
            raise ValueError("HessianOperator needs at least one loss term")
        self.theta = {name: value.detach() for name, value in theta.items()}
        self.names = _check_names(self.theta, names)
        self.layout = ParameterLayout.of(self.theta, self.names)
        self.frozen = {n: v for n, v in self.theta.items() if n not in set(self.names)}
        first = self.theta[self.names[0]]
        self.dim, self.dtype, self.device = self.layout.dim, first.dtype, first.device
        self.gradient_graph: tuple | None = None  # built by the first product when there is one term

    @classmethod
    def from_evaluator(
        cls,
        evaluator,
        theta: ParamDict,
        names: Sequence[str] | None = None,
        mode: str = "reverse",
        batches_per_term: int | None = 1,
    ) -> HessianOperator:
        """The Hessian of ``evaluator.loss`` at theta, differentiated ``batches_per_term`` batches at a time.

        ``batches_per_term=None`` differentiates the whole-split loss in one go (fastest for small
        splits, memory grows with the split); the default 1 keeps one evaluation batch's graph alive.
        """
        return cls(batched_loss_terms(evaluator, theta, batches_per_term), theta, names, mode)

    # dicts <-> vectors over the operator's parameter subset
    def flatten(self, params: ParamDict) -> torch.Tensor:
        return self.layout.flatten(params).to(self.dtype)

    def unflatten(self, vector: torch.Tensor) -> ParamDict:
        return self.layout.unflatten(vector)

    def to_full_dict(self, vector: torch.Tensor) -> ParamDict:
        """A dict over *all* of theta's names: ``vector`` on the subset, zeros elsewhere (a direction)."""
        part = self.unflatten(vector.to(self.dtype))
        return {name: part[name] if name in part else torch.zeros_like(value) for name, value in self.theta.items()}

    def hvp(self, vector_dict: ParamDict) -> ParamDict:
        """``H v`` for ``v`` given as a dict over the operator's names."""
        return self.unflatten(self.matvec(self.flatten(vector_dict)))

    def _matvec(self, vector: torch.Tensor) -> torch.Tensor:
        tangent = self.unflatten(vector)
        product = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            for term in self.terms:  # one term's graph at a time
                product += self.layout.flatten(self._term_hvp(term, tangent))
        return product

    def _term_hvp(self, term: LossFn, tangent: ParamDict) -> ParamDict:
        primal = {n: self.theta[n] for n in self.names}
        if self.mode == "forward":
            return jvp(grad(lambda sub: term({**self.frozen, **sub})), (primal,), (tangent,))[1]
        if len(self.terms) == 1:
            # one term (the split fits one batch): its gradient graph is built once and differentiated
            # again for every product, PyHessian's trick, half the work of a product; it holds the
            # memory of one graph for the operator's life, as every product holds it meanwhile
            if self.gradient_graph is None:
                self.gradient_graph = _gradient_graph(term, self.frozen, primal)
            return _differentiate(*self.gradient_graph, tangent, retain_graph=True)
        return _differentiate(*_gradient_graph(term, self.frozen, primal), tangent)


def _gradient_graph(term: LossFn, frozen: ParamDict, primal: ParamDict) -> tuple[ParamDict, tuple]:
    """Leaves at ``primal`` and the gradient of ``term`` at them, with its graph (for double backward)."""
    leaves = {n: p.detach().requires_grad_() for n, p in primal.items()}
    loss = term({**frozen, **leaves})
    return leaves, torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)


def _differentiate(leaves: ParamDict, grads: tuple, tangent: ParamDict, retain_graph: bool = False) -> ParamDict:
    """``d/dtheta <grad L(theta), v>``; parameters the loss (or its gradient) ignores get zeros."""
    terms = [(g * tangent[n]).sum() for n, g in zip(leaves, grads) if g is not None and g.requires_grad]
    if not terms:  # the gradient does not depend on the parameters: H = 0 (e.g. a linear loss)
        return {n: torch.zeros_like(p) for n, p in leaves.items()}
    products = torch.autograd.grad(sum(terms), list(leaves.values()), retain_graph=retain_graph, allow_unused=True)
    return {n: torch.zeros_like(leaves[n]) if h is None else h for n, h in zip(leaves, products)}


def _check_names(theta: ParamDict, names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return tuple(theta)
    names = tuple(names)
    unknown = [n for n in names if n not in theta]
    if unknown:
        raise ValueError(f"unknown parameter names {unknown[:5]}; the model has {list(theta)[:8]}...")
    if not names:
        raise ValueError("the Hessian needs a non-empty parameter subset")
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names repeat in {names}")
    return names
