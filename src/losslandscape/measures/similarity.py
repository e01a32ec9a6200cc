"""How similar two trained models are: linear CKA of their penultimate features, and their L2 distance.

Yang et al. 2021 ("Taxonomizing local versus global structure in neural network loss landscapes")
use CKA between models trained from different seeds as the "global" similarity measure next to
mode connectivity: in the best-generalizing phase the models are both connected and similar.
"""

from __future__ import annotations

import math

import torch

ParamDict = dict[str, torch.Tensor]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019, eq. 5) of two feature matrices over the same n examples.

    With X, Y column-centred: ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, in [0, 1], 1 for
    identical features, invariant to orthogonal transforms and isotropic scaling of either side
    (but not to arbitrary invertible maps). Computed in float64; NaN if either side is constant.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares features of the same examples, got {x.shape[0]} and {y.shape[0]} rows")
    x, y = _centred(x), _centred(y)
    if x.shape[1] > x.shape[0] or y.shape[1] > y.shape[0]:  # wide features: the n x n Gram form is cheaper
        kx, ky = x @ x.T, y @ y.T
        cross, norm_x, norm_y = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross, norm_x, norm_y = (y.T @ x).norm() ** 2, (x.T @ x).norm(), (y.T @ y).norm()
    if norm_x == 0 or norm_y == 0:
        return math.nan
    return float(cross / (norm_x * norm_y))


def _centred(features: torch.Tensor) -> torch.Tensor:
    features = features.reshape(features.shape[0], -1).double()
    return features - features.mean(dim=0, keepdim=True)


def feature_layer(model: torch.nn.Module, name: str | None = None) -> torch.nn.Module:
    """The module whose *input* is the feature: ``name`` if given, else the last ``nn.Linear``.

    For a classifier ending in a linear head (every model of this package, and most others) the
    head's input is the penultimate representation, found without knowing the architecture.
    """
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules:
            raise ValueError(f"no module {name!r} in {type(model).__name__}; modules are e.g. {[n for n in modules if n][:8]}")
        return modules[name]
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no nn.Linear: name the feature layer (task.cka.layer=<module name>)")
    return linear[-1]


def penultimate_features(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024, layer: str | None = None) -> torch.Tensor:
    """``(N, K)`` float64 inputs of the feature layer over ``x``, read by a forward pre-hook in eval mode."""
    module = feature_layer(model, layer)
    captured: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().flatten(1).double().cpu()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for start in range(0, len(x), int(batch_size)):
                model(x[start : start + int(batch_size)].to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


def l2_distance(theta_a: ParamDict, theta_b: ParamDict) -> float:
    """``||theta_A - theta_B||`` over all parameters (float64)."""
    if set(theta_a) != set(theta_b):
        raise ValueError("L2 distance needs two parameter dicts with the same names (same architecture)")
    return math.sqrt(sum(float(((theta_a[n].double() - theta_b[n].double()) ** 2).sum()) for n in theta_a))


def parameter_norm(theta: ParamDict) -> float:
    return math.sqrt(sum(float((v.double() ** 2).sum()) for v in theta.values()))
