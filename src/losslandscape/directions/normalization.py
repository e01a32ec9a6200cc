"""Normalization of a direction against the parameters it perturbs (Li et al. 2018, DESIGN.md section 4).

Parameters with at most one dimension are biases and BatchNorm scales/shifts; under the
``ignore`` policy a direction is zero there, as in Li et al.'s filter-normalized plots.
"""

from __future__ import annotations

import torch

ParamDict = dict[str, torch.Tensor]

NORMALIZATIONS = ("filter", "layer", "model", "none")
BIAS_BN_POLICIES = ("ignore", "include")
_EPS = 1e-12


def is_bias_or_bn(tensor: torch.Tensor) -> bool:
    """Biases and BatchNorm affine parameters are the 0/1-dimensional tensors of a model."""
    return tensor.dim() <= 1


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(choices)}")
    return value


def normalize_direction(
    direction: ParamDict,
    theta: ParamDict,
    normalization: str = "filter",
    bias_bn: str = "ignore",
    scale: float = 1.0,
) -> ParamDict:
    """Rescale ``direction`` to the size of ``theta`` and multiply it by ``scale``.

    ``filter``: every output filter (row of a weight, first axis) gets the norm of theta's filter;
    ``layer``: every tensor gets the norm of theta's tensor; ``model``: one factor for all, so that
    ``||d|| = ||theta||`` over the perturbed entries; ``none``: unchanged. Under ``bias_bn='ignore'``
    the 0/1-dimensional tensors are zero; under ``include`` they are normalized per tensor
    (a bias has a single "filter" per entry, which would erase its direction).
    """
    check_choice(normalization, NORMALIZATIONS, "normalization")
    check_choice(bias_bn, BIAS_BN_POLICIES, "bias/BN policy")
    out = {}
    for name, d in direction.items():
        t = theta[name]
        if is_bias_or_bn(t) and bias_bn == "ignore":
            out[name] = torch.zeros_like(d)
        elif normalization == "filter" and not is_bias_or_bn(t):
            out[name] = _filter_normalize(d, t)
        elif normalization in ("filter", "layer"):
            out[name] = d * (t.norm() / (d.norm() + _EPS))
        else:
            out[name] = d.clone()
    if normalization == "model":
        mask_theta = {n: v for n, v in theta.items() if not (is_bias_or_bn(v) and bias_bn == "ignore")}
        factor = global_norm(mask_theta) / (global_norm({n: out[n] for n in mask_theta}) + _EPS)
        out = {n: v * factor for n, v in out.items()}
    return {n: v * scale for n, v in out.items()}


def _filter_normalize(d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    d_norms = d.flatten(1).norm(dim=1)
    t_norms = t.flatten(1).norm(dim=1)
    factor = t_norms / (d_norms + _EPS)
    return d * factor.view(-1, *([1] * (d.dim() - 1)))


def global_norm(tensors: ParamDict) -> torch.Tensor:
    return torch.sqrt(sum(((v.double() ** 2).sum() for v in tensors.values()), torch.zeros((), dtype=torch.float64)))


def dot(a: ParamDict, b: ParamDict) -> torch.Tensor:
    return sum(((a[n].double() * b[n].double()).sum() for n in a), torch.zeros((), dtype=torch.float64))


def orthogonalize(d: ParamDict, against: ParamDict) -> ParamDict:
    """Gram-Schmidt: remove from ``d`` its component along ``against``, keeping ``||d||``.

    Keeping the norm keeps the second axis of a plane on the same scale as the first; zero
    (ignored) entries stay zero because both inputs are zero there.
    """
    coefficient = dot(d, against) / dot(against, against)
    projected = {n: d[n] - (coefficient * against[n].double()).to(d[n].dtype) for n in d}
    factor = global_norm(d) / global_norm(projected)
    return {n: (v.double() * factor).to(v.dtype) for n, v in projected.items()}
