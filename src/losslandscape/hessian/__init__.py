"""Hessian measures around a checkpoint: eigenpairs, trace, spectral density, directional curvature.

Everything goes through one linear operator (:class:`HessianOperator`) whose Hessian-vector
products differentiate the project's evaluator (``Evaluator.loss``) twice.
"""

from .curvature import directional_curvature, fitted_curvature, hessian_lens, hessian_quadratic_form
from .density import density_grid, slq, slq_moments, spectral_density
from .lanczos import hessian_eigenpairs, lanczos, power_iteration_eigenpairs
from .operator import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    ParameterLayout,
    flatten_params,
    names_with_prefix,
    unflatten_vector,
    weight_names,
)
from .trace import hutchinson_trace, hutchpp_trace

__all__ = [
    "DenseOperator",
    "HessianOperator",
    "LinearOperator",
    "ParameterLayout",
    "density_grid",
    "directional_curvature",
    "fitted_curvature",
    "flatten_params",
    "hessian_eigenpairs",
    "hessian_lens",
    "hessian_quadratic_form",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "names_with_prefix",
    "power_iteration_eigenpairs",
    "slq",
    "slq_moments",
    "spectral_density",
    "unflatten_vector",
    "weight_names",
]
