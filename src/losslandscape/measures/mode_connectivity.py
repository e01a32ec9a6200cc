"""Mode connectivity: a trained quadratic Bezier curve between two models (Garipov et al. 2018; Yang et al. 2021).

The curve ``phi(t) = (1-t)^2 theta_A + 2t(1-t) theta_c + t^2 theta_B`` keeps both trained models fixed
and trains only the control point ``theta_c`` (started at the midpoint, where the curve *is* the
linear path) to minimize ``E_{t ~ U(0,1)} L(phi(t))`` on mini-batches. Every evaluation is a
``torch.func.functional_call`` on a parameter dict, so any ``nn.Module`` works: no curve-aware layers.

The mode-connectivity measure (Yang et al. 2021, as written in DESIGN.md section 4):
``mc = (E(0) + E(1)) / 2 - E(t*)`` with ``t* = argmax_t |E(t) - (E(0) + E(1)) / 2|`` on the t grid.
``mc < 0``: a barrier along even the best curve (a poorly connected landscape); ``mc > 0``: the
curve passes lower than the endpoints (the endpoints are not at the bottom, e.g. under-trained);
``mc ~ 0``: the two models sit in one connected low-loss region.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, replace_all_batch_norm_modules_

from ..store import load_tensors, save_tensors
from ..losses import Loss, as_loss
from ..progress import progress_bar

ParamDict = dict[str, torch.Tensor]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")


def linear_point(theta_a: ParamDict, theta_b: ParamDict, t: float) -> ParamDict:
    """``(1-t) theta_A + t theta_B``: the straight path, the baseline every curve is compared with.

    Written from the nearer endpoint (``theta_A + t (theta_B - theta_A)`` for t <= 1/2, the mirror
    image above) so that t = 0 and t = 1 give the two models bit for bit, and identical models a
    constant path, in any floating-point precision.
    """
    if t <= 0.5:
        return {n: theta_a[n] + t * (theta_b[n] - theta_a[n]) for n in theta_a}
    return {n: theta_b[n] + (1 - t) * (theta_a[n] - theta_b[n]) for n in theta_a}


def bezier_point(theta_a: ParamDict, control: ParamDict, theta_b: ParamDict, t: float) -> ParamDict:
    """``(1-t)^2 theta_A + 2t(1-t) theta_c + t^2 theta_B``; differentiable in the control point.

    Evaluated as ``theta_A + 2t(1-t)(theta_c - theta_A) + t^2 (theta_B - theta_A)`` for t <= 1/2
    (mirrored above): the same polynomial, but exact at the endpoints and for identical models,
    where the Bernstein sum would be off by a rounding error.
    """
    s = 1 - t
    if t <= 0.5:
        return {n: theta_a[n] + (2 * t * s) * (control[n] - theta_a[n]) + (t * t) * (theta_b[n] - theta_a[n]) for n in theta_a}
    return {n: theta_b[n] + (2 * t * s) * (control[n] - theta_b[n]) + (s * s) * (theta_a[n] - theta_b[n]) for n in theta_a}


def midpoint(theta_a: ParamDict, theta_b: ParamDict) -> ParamDict:
    """The control point at which the Bezier curve is exactly the linear path: the curve's start."""
    return {n: (theta_a[n] + theta_b[n]) / 2 for n in theta_a}


def mode_connectivity(ts: Sequence[float], losses: Sequence[float]) -> dict[str, float]:
    """``mc = (E(0)+E(1))/2 - E(t*)``, ``t* = argmax_t |E(t) - (E(0)+E(1))/2|`` over the sampled t grid.

    The grid must start at 0 and end at 1 (the endpoints are the two models). Non-finite values
    along the curve count as an infinite barrier (mc = -inf), never as a crash.
    """
    ts, losses = np.asarray(ts, dtype=float), np.asarray(losses, dtype=float)
    _check_grid(ts, losses)
    ends = (losses[0] + losses[-1]) / 2
    deviation = np.where(np.isfinite(losses), np.abs(losses - ends), np.inf)
    index = int(np.argmax(deviation))
    mc = ends - losses[index] if np.isfinite(losses[index]) else -math.inf
    return {"mc": float(mc), "t_star": float(ts[index]), "endpoint_mean": float(ends), "loss_at_t_star": float(losses[index])}


def _check_grid(ts: np.ndarray, losses: np.ndarray) -> None:
    if ts.ndim != 1 or len(ts) < 2 or len(ts) != len(losses):
        raise ValueError(f"need a 1D t grid and one loss per t, got {ts.shape} and {losses.shape}")
    if ts[0] != 0 or ts[-1] != 1:
        raise ValueError(f"the t grid must start at 0 and end at 1 (the two models), got {ts[0]} .. {ts[-1]}")


@dataclass(frozen=True)
class CurveTraining:
    """How the control point is trained: ``steps`` mini-batch steps at one random t each."""

    steps: int = 1000
    lr: float = 0.01
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine (to 0) | constant
    seed: int = 0
    save_every: int = 0  # steps between resumable snapshots (0: none before the end)

    def __post_init__(self) -> None:
        problems = []
        if int(self.steps) < 0:
            problems.append(f"steps must be >= 0 (0 keeps the midpoint: the linear path), got {self.steps}")
        if not float(self.lr) > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if int(self.batch_size) < 1:
            problems.append(f"batch_size must be a positive int, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} is unknown: expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule {self.schedule!r} is unknown: expected one of {', '.join(SCHEDULES)}")
        if float(self.weight_decay) < 0 or int(self.save_every) < 0:
            problems.append(f"weight_decay and save_every must be >= 0, got {self.weight_decay} and {self.save_every}")
        if problems:
            raise ValueError("curve training settings: " + "; ".join(problems))

    def describe(self) -> dict:
        return asdict(self)


def curve_training_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A train-mode copy whose BatchNorm layers use batch statistics and keep no running buffers.

    Along the curve the running statistics of theta_A and theta_B mean nothing, so training
    normalizes by each mini-batch (as Garipov et al. do); evaluation re-estimates them per t.
    """
    trainable = copy.deepcopy(model).train()
    replace_all_batch_norm_modules_(trainable)
    for p in trainable.parameters():
        p.requires_grad_(False)
    return trainable


def train_bezier_control(
    model: torch.nn.Module,
    theta_a: ParamDict,
    theta_b: ParamDict,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: CurveTraining,
    state_path: str | Path | None = None,
    fingerprint: str = "",
    progress: bool = False,
    loss: Loss | None = None,
) -> tuple[ParamDict, dict]:
    """The trained control point and a record (losses, wall time, steps).

    Step ``k`` draws its t and its mini-batch from a generator seeded by ``(seed, k)``, so a run
    resumed from the snapshot at ``state_path`` (written every ``save_every`` steps, with the
    optimizer's state) continues with exactly the numbers an uninterrupted run would have.
    """
    trainable = curve_training_copy(model)
    criterion = as_loss(loss)  # the measured loss (default cross-entropy)
    theta_a = {n: v.detach() for n, v in theta_a.items()}
    theta_b = {n: v.detach() for n, v in theta_b.items()}
    control = {n: v.clone().requires_grad_(True) for n, v in midpoint(theta_a, theta_b).items()}
    optimizer = _optimizer(list(control.values()), settings)
    losses: list[float] = []
    start, started = 0, time.perf_counter()
    state = _load_state(state_path, fingerprint)
    if state is not None:
        with torch.no_grad():
            for n, v in state["control"].items():
                control[n].copy_(v)
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), list(state["losses"])
    steps = int(settings.steps)
    bar = progress_bar(range(start, steps), desc="bezier curve", disable=not progress, leave=False, initial=start, total=steps)
    for step in bar:
        t, indices = _step_sample(settings.seed, step, len(y), int(settings.batch_size))
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(settings, step)
        indices = indices.to(x.device)
        outputs = functional_call(trainable, bezier_point(theta_a, control, theta_b, t), (x[indices],))
        batch_loss = criterion.mean(outputs, y[indices])
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        losses.append(float(batch_loss.detach()))
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if state_path is not None and settings.save_every and (step + 1) % int(settings.save_every) == 0 and step + 1 < steps:
            _save_state(state_path, fingerprint, control, optimizer, step + 1, losses)
    bar.close()
    tail = losses[-max(1, len(losses) // 10):] if losses else []
    record = {
        "steps": steps,
        "resumed_at": start,
        "wall_time": time.perf_counter() - started,
        "final_loss": float(np.mean(tail)) if tail else None,  # mean mini-batch loss of the last 10 % of steps
        "losses": losses,
        "settings": settings.describe(),
    }
    return {n: v.detach() for n, v in control.items()}, record


def _step_sample(seed: int, step: int, n: int, batch_size: int) -> tuple[float, torch.Tensor]:
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    t = float(torch.rand((), generator=generator, dtype=torch.float64))
    return t, torch.randperm(n, generator=generator)[: min(batch_size, n)]


def _learning_rate(settings: CurveTraining, step: int) -> float:
    if settings.schedule == "constant":
        return float(settings.lr)
    return float(settings.lr) * 0.5 * (1 + math.cos(math.pi * step / max(1, int(settings.steps))))


def _optimizer(params: list[torch.Tensor], settings: CurveTraining) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=float(settings.lr), weight_decay=float(settings.weight_decay))
    return torch.optim.SGD(params, lr=float(settings.lr), momentum=float(settings.momentum), weight_decay=float(settings.weight_decay))


def _save_state(path, key, control, optimizer, step, losses) -> None:
    save_tensors(path, {"control": {n: v.detach().cpu() for n, v in control.items()}, "optimizer": optimizer.state_dict(),
                        "step": step, "losses": losses}, key)


def _load_state(path, key) -> dict | None:
    """The snapshot at ``path`` if it was taken under ``key`` (same end points, data and settings)."""
    return None if path is None else load_tensors(path, key)


def path_metrics(evaluator, params_at: Callable[[float], ParamDict], ts: Sequence[float]) -> np.ndarray:
    """``(T, 2)`` [loss, accuracy] of the evaluator at ``params_at(t)`` for every t.

    Build the evaluator with ``bn_mode='recompute'`` for models with BatchNorm: the running
    statistics are re-estimated at every point of the path (a no-op without BatchNorm).
    """
    with torch.inference_mode():
        rows = [evaluator.metrics(params_at(float(t))).double().cpu().numpy() for t in ts]
    return np.stack(rows)
