"""Hessian eigenvectors as scan directions: the top ones are the sharpest, a negative bottom one a peak."""

from __future__ import annotations

from ..hessian import HessianOperator, hessian_eigenpairs, weight_names
from .context import DirectionContext
from .normalization import ParamDict, normalize_direction


class HessianEigenvector:
    """Direction ``i`` is the eigenvector of the ``i``-th largest (``top``) or most negative (``bottom``)
    eigenvalue of the training-loss Hessian at theta, found by Lanczos and normalized like noise."""

    def __init__(self, which: str = "top", normalization: str = "model", bias_bn: str = "include", scale: float = 1.0,
                 tol: float = 1e-4, max_steps: int = 200):
        if which not in ("top", "bottom"):
            raise ValueError(f"unknown eigenvector end {which!r}: expected top or bottom")
        normalize_direction({}, {}, normalization, bias_bn)
        self.which, self.normalization, self.bias_bn, self.scale = which, normalization, bias_bn, float(scale)
        self.tol, self.max_steps = float(tol), int(max_steps)
        self._found: tuple[list[ParamDict], list[float]] | None = None
        self.eigenvalues: list[float] = []

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        vectors, values = self._eigenpairs(context, index + 1)
        self.eigenvalues = values
        return normalize_direction(vectors[index], context.theta, self.normalization, self.bias_bn, self.scale)

    def _eigenpairs(self, context: DirectionContext, k: int) -> tuple[list[ParamDict], list[float]]:
        if self._found is None or len(self._found[0]) < k:
            names = weight_names(context.theta) if self.bias_bn == "ignore" else None
            operator = HessianOperator(context.loss, context.theta, names)
            values, vectors, _ = hessian_eigenpairs(operator, max(k, 2), self.which, self.tol, self.max_steps, seed=context.seed)
            self._found = ([operator.to_full_dict(v) for v in vectors], [float(v) for v in values])
        return self._found

    def describe(self) -> dict:
        return {"type": "HessianEigenvector", "which": self.which, "eigenvalues": self.eigenvalues,
                "normalization": self.normalization, "bias_bn": self.bias_bn, "scale": self.scale, "tol": self.tol}
