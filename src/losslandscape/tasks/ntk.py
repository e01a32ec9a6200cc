"""Task ``ntk``: how the empirical neural tangent kernel moves along the training trajectory (Fort et al. 2020).

On a fixed, seeded subset of ``task.examples`` inputs the empirical NTK ``K_e`` is computed at every
saved checkpoint (init = epoch 0, then every saved epoch, in order; see
:mod:`losslandscape.measures.ntk`), in eval mode (BatchNorm with each checkpoint's own running
statistics). Reported per epoch: the kernel distance to the initial kernel, the distance to the
previous saved kernel and the kernel velocity (that distance per epoch), ``||K_e||_F``, the training
history's accuracy, and the pairwise distances between all saved kernels. Each kernel is one file
``ntk/kernels/epoch_NNN.npz`` written when it is finished, so a killed run continues where it stopped;
distances are always computed from the kernels as stored, so a resumed run gives the same numbers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..files import stable_hash, write_json, write_npz
from ..store import content_digest, load_arrays, result_key, save_arrays
from ..measures.ntk import KERNELS, KernelDynamics, empirical_ntk, pairwise_distances
from ..plots.ntk import plot_kernel_distance_matrix, plot_kernel_dynamics
from ..progress import progress_bar
from .common import Session, load_model, run_task, summary_head, trained_checkpoints
from .references import Checkpoints

DTYPES = {"float32": torch.float32, "float64": torch.float64}
BN_POLICY = "eval: each checkpoint's own BatchNorm running statistics, dropout off"


def run_ntk(cfg) -> dict[str, Any]:
    return run_task(cfg, _ntk)


def _ntk(session: Session) -> dict[str, Any]:
    cfg, task, out = session.cfg, session.cfg.task, session.output_dir / "ntk"
    x_all, _ = check_settings(session)
    indices = subset_indices(len(x_all), int(task.examples), int(task.subset_seed))
    run = trained_checkpoints(session)
    checkpoints = Checkpoints(session, run)
    epochs = [0, *(int(p.stem.removeprefix("epoch_")) for p in run.epochs())]
    refs = ["init", *(f"epoch:{e}" for e in epochs[1:])]
    dtype = DTYPES[str(task.dtype)]
    x = x_all[torch.as_tensor(indices)].to(session.device, dtype)
    settings = {"train_key": run.key, "split": str(task.split), "indices": stable_hash(indices), "kernel": str(task.kernel), "dtype": str(task.dtype)}

    files = [out / "kernels" / f"epoch_{epoch:03d}.npz" for epoch in epochs]
    dynamics, seconds, shape = KernelDynamics(epochs), [], None
    for epoch, ref, file in progress_bar(list(zip(epochs, refs, files)), desc="NTK per checkpoint", disable=not cfg.progress):
        kernel, took = kernel_at(session, checkpoints.path(ref), x, file, {**settings, "epoch": epoch}, indices)
        dynamics.add(kernel)  # holds the initial and the previous kernel only: memory does not grow with the epochs
        seconds.append(took)
        shape = list(kernel.shape)
    dynamics = dynamics.series()
    matrix = pairwise_distances(files) if task.pairwise else None
    accuracy = history_accuracy(run.history, epochs)
    early, late = early_and_late(epochs, dynamics["velocity"], int(task.early_epochs))
    record = {
        "epochs": epochs, **_nan_to_none({**dynamics, **accuracy}), "seconds": seconds,
        "velocity_early": early, "velocity_late": late, "early_epochs": int(task.early_epochs),
        "kernel": str(task.kernel), "kernel_shape": shape, "examples": int(task.examples),
        "split": str(task.split), "indices": indices, "bn": BN_POLICY,
    }
    write_json(out / "dynamics.json", {**record, "provenance": session.provenance(train_key=run.key, checkpoints=str(run.directory))})
    if matrix is not None:
        write_npz(out / "distance_matrix.npz", {"epochs": np.asarray(epochs), "distance": matrix},
                  session.provenance(train_key=run.key, kernel=str(task.kernel), bn=BN_POLICY))

    figures, title = [], f"{_model_name(cfg)} on {session.data.name}: NTK ({task.kernel}) of {task.examples} {task.split} inputs"
    if session.is_main:
        figures = plot_kernel_dynamics(record, out.parent / "figures" / "ntk_dynamics", title=title)
        if matrix is not None:
            figures += plot_kernel_distance_matrix(epochs, matrix, out.parent / "figures" / "ntk_distance_matrix", title=title)
        session.tracker.log_figures("ntk", figures)
        log_series = getattr(session.tracker, "log_series", None)  # per-epoch W&B lines where the tracker has them
        if log_series is not None:
            keys = ["distance_to_init", "distance_to_previous", "velocity", "frobenius_norm", *accuracy]
            log_series("ntk", "epoch", [{"epoch": e, **{k: record[k][i] for k in keys}} for i, e in enumerate(epochs)])
    return {
        **summary_head(session, "ntk"),
        "ntk": {key: record[key] for key in ("kernel", "kernel_shape", "examples", "split", "epochs", "distance_to_init",
                                             "velocity", "velocity_early", "velocity_late", "bn")},
        "seconds_total": float(sum(seconds)),
        "figures": [str(f) for f in figures],
        "headline": headline(record),
    }


def check_settings(session: Session) -> tuple[torch.Tensor, torch.Tensor]:
    """Every setting checked with one clear message, before any training; returns the split's data."""
    cfg, task = session.cfg, session.cfg.task
    if cfg.checkpoint:
        raise ConfigError("task=ntk walks the cached training trajectory (init and every saved epoch); unset checkpoint (checkpoint=null)")
    if task.split not in ("train", "test"):
        raise ConfigError(f"task.split={task.split!r} is unknown: expected train or test")
    if task.kernel not in KERNELS:
        raise ConfigError(f"task.kernel={task.kernel!r} is unknown: expected full ((nC) x (nC)), trace (n x n) or sum (n x n)")
    if str(task.dtype) not in DTYPES:
        raise ConfigError(f"task.dtype={task.dtype!r} is unknown: expected float32 or float64")
    x, y = session.data.split(str(task.split))
    if not isinstance(task.examples, int) or isinstance(task.examples, bool) or not 1 <= task.examples <= len(x):
        raise ConfigError(f"task.examples must be an integer in [1, {len(x)}] (the size of the {task.split} split), got {task.examples!r}")
    if task.example_chunk is not None and int(task.example_chunk) < 1:
        raise ConfigError(f"task.example_chunk must be a positive integer or null (all examples in one vmap), got {task.example_chunk}")
    if not float(task.max_jacobian_mb) > 0:
        raise ConfigError(f"task.max_jacobian_mb must be positive, got {task.max_jacobian_mb}")
    if int(task.early_epochs) < 1:
        raise ConfigError(f"task.early_epochs must be at least 1, got {task.early_epochs}")
    return x, y


def subset_indices(size: int, examples: int, seed: int) -> list[int]:
    """The same ``examples`` inputs at every checkpoint: a seeded draw without replacement, sorted."""
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:examples].tolist())


def kernel_at(session: Session, checkpoint: Path, x: torch.Tensor, path: Path, settings: dict, indices: list[int]) -> tuple[torch.Tensor, float]:
    """The kernel of one checkpoint: read back if its file holds the kernel of these very weights on these
    inputs (the result store's key), else computed and saved."""
    task = session.cfg.task
    model = load_model(session, checkpoint).to(x.dtype)
    key = result_key({"measure": "ntk", "weights": content_digest(model.state_dict()), "model": repr(model),
                      "inputs": content_digest(x), "kernel": str(task.kernel), "device": x.device.type})
    if (stored := load_arrays(path, key)) is not None:
        return torch.from_numpy(stored[0]["kernel"]), float(stored[1]["seconds"])
    start = time.perf_counter()
    chunk = None if task.example_chunk is None else int(task.example_chunk)
    kernel = empirical_ntk(model, x, str(task.kernel), example_chunk=chunk, max_jacobian_mb=float(task.max_jacobian_mb))
    seconds = time.perf_counter() - start
    kernel = kernel.to(x.dtype).cpu()  # stored at the computation's precision; distances are taken from the stored kernel
    save_arrays(path, {"kernel": kernel.numpy(), "indices": np.asarray(indices)},
                session.provenance(settings=settings, checkpoint=str(checkpoint), seconds=seconds, bn=BN_POLICY), key)
    return kernel, seconds


def history_accuracy(history: list[dict], epochs: list[int]) -> dict[str, list[float]]:
    """Train and test accuracy of the run's history at the saved epochs (NaN at init and where missing)."""
    by_epoch = {int(row["epoch"]): row for row in history if "epoch" in row}
    return {f"{split}_accuracy": [float(by_epoch.get(e, {}).get(f"{split}/accuracy", math.nan)) for e in epochs] for split in ("train", "test")}


def early_and_late(epochs: list[int], velocity: list[float], early_epochs: int) -> tuple[float | None, float | None]:
    """Mean velocity over the intervals ending at or before ``early_epochs``, and over the intervals of the
    second half of training after them (None where there is no such interval, e.g. in a 2-epoch run)."""
    last = epochs[-1]
    early = [v for e, v in zip(epochs[1:], velocity[1:]) if e <= early_epochs]
    late = [v for e, v in zip(epochs[1:], velocity[1:]) if e > last / 2 and e > early_epochs]
    return (float(np.mean(early)) if early else None, float(np.mean(late)) if late else None)


def _nan_to_none(series: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """Undefined entries (no previous kernel at init, no accuracy before training) as JSON null, not NaN."""
    return {key: [None if v is None or math.isnan(v) else v for v in values] for key, values in series.items()}


def headline(record: dict) -> list[str]:
    shape = "x".join(str(s) for s in record["kernel_shape"])
    early, late = record["velocity_early"], record["velocity_late"]
    ratio = f"{early / late:.3g}" if early is not None and late else "n/a"
    return [
        f"NTK ({record['kernel']}, {shape}) on {record['examples']} {record['split']} inputs at {len(record['epochs'])} checkpoints, "
        f"{sum(record['seconds']):.1f} s of kernels",
        f"kernel distance to init at epoch {record['epochs'][-1]}: {record['distance_to_init'][-1]:.4f}",
        f"kernel velocity (distance/epoch): epochs <= {record['early_epochs']} {_number(early)}, "
        f"second half {_number(late)} (ratio {ratio})",
    ]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _model_name(cfg) -> str:
    return str(cfg.model._target_).rsplit(".", 1)[-1]
