"""The empirical neural tangent kernel and how far it moves during training (Fort et al. 2020).

For a network f(x; theta) with C logits and a fixed set of n inputs, the empirical NTK is
``K = J J^T`` with J the (n C) x P Jacobian of the logits with respect to all P parameters: entry
``K[(a, c), (b, d)] = <d f_c(x_a) / d theta, d f_d(x_b) / d theta>``. In the kernel (lazy) regime
K stays at its initial value; Fort et al. ("Deep learning versus kernel learning", NeurIPS 2020)
measure how fast it moves with the kernel distance

    S(K1, K2) = 1 - <K1, K2>_F / (||K1||_F ||K2||_F)

(0 for kernels equal up to a positive factor, 1 for orthogonal ones) and the kernel velocity
``S(K_t, K_t+dt) / dt``: fast in the first epochs, then slow and nearly constant.

Three kernels of the same Jacobian, a setting (all cost the same Jacobian; only memory differs):

- ``full``: the whole (n C) x (n C) matrix, rows ordered example-major (row ``a * C + c``);
- ``trace``: n x n, ``sum_c K[(a, c), (b, c)]``, the trace of every C x C block (the per-class
  kernel summed over classes: the same-logit part, which is ``C`` times the kernel of one logit
  when the classes are interchangeable, as for a network's head at initialization);
- ``sum``: n x n, the NTK of the summed logits ``sum_c f_c``: ``sum_{c,d} K[(a, c), (b, d)]``.

The Jacobian comes from ``torch.func``: ``vmap`` over examples of ``jacrev`` of one example's
logits. Memory is bounded by ``max_jacobian_mb``: parameter tensors are packed into groups whose
Jacobian over all n inputs fits (K is the sum of the groups' kernels), and a group that does not
fit even alone is split into blocks of examples (off-diagonal blocks recompute one Jacobian).
The model is evaluated in eval mode: BatchNorm uses the checkpoint's running statistics (so every
logit depends on its own input only) and dropout is off.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

from ..store import read_arrays

ParamDict = dict[str, torch.Tensor]
KERNELS = ("full", "trace", "sum")


def kernel_distance(k1: torch.Tensor, k2: torch.Tensor) -> float:
    """``1 - <K1, K2>_F / (||K1||_F ||K2||_F)`` in float64 (Fort et al. 2020); NaN if a kernel is zero.

    Scale-free: it sees only how the kernel's *shape* changes, not its growth, which is why a kernel
    that only grows (as it does early in training) still has distance 0 to its start."""
    if k1.shape != k2.shape:
        raise ValueError(f"kernels of different shapes cannot be compared: {tuple(k1.shape)} and {tuple(k2.shape)}")
    k1, k2 = k1.double(), k2.double()
    norms = k1.norm() * k2.norm()
    if norms == 0:
        return math.nan
    return max(0.0, float(1.0 - (k1 * k2).sum() / norms))  # >= 0 by Cauchy-Schwarz: no -1e-16 from rounding


def kernel_velocities(epochs: list[int], distances_to_previous: list[float]) -> list[float]:
    """Distance between consecutive saved kernels divided by the epochs between them (the first: NaN)."""
    velocities = [math.nan]
    for (previous, epoch), distance in zip(zip(epochs, epochs[1:]), distances_to_previous[1:]):
        velocities.append(distance / (epoch - previous))
    return velocities


def empirical_ntk(
    model: torch.nn.Module,
    x: torch.Tensor,
    kernel: str = "full",
    params: ParamDict | None = None,
    example_chunk: int | None = 32,
    max_jacobian_mb: float = 256.0,
) -> torch.Tensor:
    """The empirical NTK of ``model`` at ``params`` (default: its own) on the inputs ``x``, in float64.

    ``kernel`` is ``full`` ((n C) x (n C)), ``trace`` or ``sum`` (n x n), see the module docstring.
    The model is put in eval mode. ``example_chunk`` examples go through ``vmap`` at once (None: all),
    which bounds the activations' memory; ``max_jacobian_mb`` bounds the Jacobian blocks held at once.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    model.eval()
    params = dict(params) if params is not None else {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    n = len(x)
    classes = _num_outputs(model, params, buffers, x[:1])
    side = n * classes if kernel == "full" else n
    result = torch.zeros(side, side, dtype=torch.float64, device=x.device)
    bytes_per_value = torch.finfo(x.dtype).bits // 8 if x.is_floating_point() else 4
    budget = max(1.0, float(max_jacobian_mb) * 2**20 / bytes_per_value)  # values one Jacobian block may hold
    for group in parameter_groups(params, n * classes, budget):
        jacobian = _jacobian_function(model, params, buffers, group, example_chunk)
        rows = max(1, int(budget // (2 * classes * sum(params[g].numel() for g in group))))  # two blocks live at once
        blocks = [slice(start, min(start + rows, n)) for start in range(0, n, rows)]
        for i, first in enumerate(blocks):
            j_first = jacobian(x[first])
            _add_block(result, j_first, j_first, first, first, kernel, classes)
            for second in blocks[i + 1 :]:
                j_second = jacobian(x[second])
                _add_block(result, j_first, j_second, first, second, kernel, classes)
                _add_block(result, j_second, j_first, second, first, kernel, classes)
    return result


def parameter_groups(params: ParamDict, outputs: int, budget: float) -> Iterator[list[str]]:
    """Consecutive parameter tensors packed so that ``outputs x (their size)`` stays within ``budget``
    values; a tensor too big for the budget forms a group alone (its examples are then blocked)."""
    group, size = [], 0
    for name, value in params.items():
        if group and (size + value.numel()) * outputs > budget:
            yield group
            group, size = [], 0
        group.append(name)
        size += value.numel()
    if group:
        yield group


def jacobian_matrix(model: torch.nn.Module, x: torch.Tensor, params: ParamDict | None = None, example_chunk: int | None = 32) -> torch.Tensor:
    """The (n, C, P) Jacobian of the logits over all parameters (in ``params`` order), eval mode."""
    model.eval()
    params = dict(params) if params is not None else {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return _jacobian_function(model, params, buffers, list(params), example_chunk)(x)


def _jacobian_function(model, params: ParamDict, buffers: ParamDict, group: list[str], example_chunk: int | None):
    """``x -> (m, C, P_group)``: ``vmap`` over examples of the reverse-mode Jacobian of one example's
    logits with respect to the group's tensors (the other parameters held fixed)."""
    fixed = {n: v for n, v in params.items() if n not in group}

    def logits(trainable: ParamDict, one_x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, ({**fixed, **trainable}, buffers), (one_x.unsqueeze(0),)).squeeze(0)

    batched = vmap(jacrev(logits), in_dims=(None, 0), chunk_size=example_chunk)
    trainable = {n: params[n] for n in group}

    def jacobian(x: torch.Tensor) -> torch.Tensor:
        parts = batched(trainable, x)
        return torch.cat([parts[n].flatten(start_dim=2) for n in group], dim=2)

    return jacobian


def _add_block(result: torch.Tensor, j1: torch.Tensor, j2: torch.Tensor, rows: slice, cols: slice, kernel: str, classes: int) -> None:
    """Add this parameter group's contribution ``J1 J2^T`` (reduced to ``kernel``) to the block of ``result``."""
    if kernel == "full":
        block = torch.einsum("acp,bdp->acbd", j1, j2).reshape(j1.shape[0] * classes, j2.shape[0] * classes)
        result[rows.start * classes : rows.stop * classes, cols.start * classes : cols.stop * classes] += block.double()
    elif kernel == "trace":
        result[rows, cols] += torch.einsum("acp,bcp->ab", j1, j2).double()
    else:
        result[rows, cols] += (j1.sum(dim=1) @ j2.sum(dim=1).T).double()


def _num_outputs(model, params: ParamDict, buffers: ParamDict, x: torch.Tensor) -> int:
    with torch.no_grad():
        out = functional_call(model, (params, buffers), (x,))
    if out.ndim != 2:
        raise ValueError(f"the NTK needs a model with (batch, classes) outputs, got shape {tuple(out.shape)}")
    return int(out.shape[1])


class KernelDynamics:
    """Distance to the initial kernel, to the previous saved kernel, the velocity and ``||K||_F``, one epoch at a time."""

    def __init__(self, epochs: list[int]):
        self.epochs, self.first, self.previous = epochs, None, None
        self.to_init, self.to_previous, self.norms = [], [], []

    def add(self, kernel: torch.Tensor) -> None:
        self.first = kernel if self.first is None else self.first
        self.to_init.append(kernel_distance(self.first, kernel))
        self.to_previous.append(math.nan if self.previous is None else kernel_distance(self.previous, kernel))
        self.norms.append(float(kernel.double().norm()))
        self.previous = kernel

    def series(self) -> dict[str, list[float]]:
        return {
            "distance_to_init": self.to_init,
            "distance_to_previous": self.to_previous,
            "velocity": kernel_velocities(self.epochs, self.to_previous),
            "frobenius_norm": self.norms,
        }


def pairwise_distances(files: list[Path]) -> np.ndarray:
    """Kernel distance between every two saved kernels (symmetric, zero diagonal), read back from their
    files two at a time so that memory stays at two kernels whatever the number of epochs."""
    def load(path: Path) -> torch.Tensor:
        return torch.from_numpy(read_arrays(path)[0]["kernel"])

    matrix = np.zeros((len(files), len(files)))
    for i in range(len(files)):
        first = load(files[i])
        for j in range(i + 1, len(files)):
            matrix[i, j] = matrix[j, i] = kernel_distance(first, load(files[j]))
    return matrix
