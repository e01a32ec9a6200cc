"""The Python API for notebooks: the CLI's measures on a model and data already in memory, no Hydra.

    import losslandscape as ll
    line = ll.scan(model, (x, y))                      # a 1D curve along one filter-normalized Gaussian direction
    plane = ll.scan(model, (x, y), directions=2, grid=(21, 21), loss=ll.losses.MeanSquaredError())
    plane.plot("figures/plane")                        # the CLI's contour and 3D figures
    spectrum = ll.hessian(model, (x, y), top_k=5, trace_samples=100)
    mined = ll.mine(model, (x, y), preset="w_peak")

Each call runs the same core as ``python run.py``: the evaluator (the objective: model, data,
loss, BatchNorm policy), the scan runner, the Hessian operator and the miner, and returns the
same result objects the CLI writes (:class:`~losslandscape.landscape.scans.ScanResult`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data.splits import DataSplits
from .directions.context import DirectionContext
from .directions.noise import NoiseDirection
from .directions.normalization import ParamDict, orthogonalize
from .hessian import HessianOperator, hessian_eigenpairs, hutchinson_trace
from .landscape.batches import Residency
from .landscape.evaluator import Evaluator, as_dtype, parameters_of
from .landscape.scans import LineScan, PlaneScan, ScanResult, run_scan
from .landscape.shapes import classify_curve
from .losses import Loss, as_loss
from .mining import objectives as mining_objectives
from .mining.miner import DirectionMiner

Data = Any  # (x, y) tensors, a TensorDataset, a DataLoader or DataSplits


def as_tensors(data: Data, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` tensors of ``data``: a pair of tensors or arrays, a dataset of pairs,
    a ``DataLoader`` (all its batches) or a :class:`DataSplits` (its ``split``)."""
    if isinstance(data, DataSplits):
        return data.split(split)
    if isinstance(data, torch.utils.data.DataLoader):
        batches = list(data)
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if isinstance(data, torch.utils.data.TensorDataset):
        return data.tensors[0], data.tensors[1]
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1])
    if isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]
        return torch.stack([torch.as_tensor(p[0]) for p in pairs]), torch.stack([torch.as_tensor(p[1]) for p in pairs])
    raise TypeError(f"data must be (inputs, targets), a Dataset of pairs, a DataLoader or DataSplits, got {type(data).__name__}")


def objective(model: torch.nn.Module, data: Data, loss: Loss | Callable | None = None, split: str = "train",
              bn_mode: str = "eval", batch_size: int | str | None = "auto", workers: int = 1, bn_data: Data | None = None,
              resident: bool | str = True, budget_mb: float = 4096.0) -> Evaluator:
    """The evaluator every measure below uses: ``model`` on ``data`` under ``loss`` (default cross-entropy).

    ``resident`` (``True``, ``False`` or ``"auto"`` with ``budget_mb``) keeps the data on the model's
    device or streams it in the same batches, with the same numbers (``evaluation.resident``)."""
    x, y = as_tensors(data, split)
    device = next(model.parameters()).device
    bn_x = as_tensors(bn_data)[0] if bn_data is not None else x[:1024]
    criterion = as_loss(loss)
    with torch.no_grad():
        criterion.check(model.eval()(x[:2].to(device)), y[:2].to(device), None)
    return Evaluator(model, x, y, batch_size, bn_mode, bn_x, 0.0 if workers == 1 else 512.0, workers, criterion,
                     Residency(resident, budget_mb))


def random_directions(model: torch.nn.Module, count: int, seed: int = 0, normalization: str = "filter",
                      bias_bn: str = "ignore") -> list[ParamDict]:
    """``count`` filter-normalized Gaussian directions (Li et al. 2018), seeded like the CLI's."""
    theta = parameters_of(model)
    maker = NoiseDirection("gaussian", normalization, bias_bn)
    context = DirectionContext(theta, int(seed), None, None, None)
    return [maker(context, i) for i in range(count)]


def scan(model: torch.nn.Module, data: Data, loss: Loss | Callable | None = None, directions: int | Sequence[ParamDict] = 1,
         grid: int | tuple[int, int] = 51, span: tuple[float, float] = (-1.0, 1.0), seed: int = 0, bn_mode: str = "eval",
         batch_size: int | str | None = "auto", workers: int = 1, path: str | Path | None = None, progress: bool = False,
         precision: dict | None = None, resident: bool | str = True) -> ScanResult:
    """The loss around ``model`` along one direction (a curve, labelled with its shape) or two (a surface).

    ``directions`` is a count of filter-normalized Gaussian directions or a list of direction dicts
    (same names and shapes as ``model.named_parameters()``); ``grid`` the points (a pair for a
    plane); ``path`` keeps the ``.npz`` file (and makes the scan resumable). Every value comes with
    its standard error (``result.errors``); ``precision`` (e.g. ``{"relative": 0.01}``) stops each
    point once its 95 % interval is that narrow (``scan.<name>.precision``)."""
    theta = parameters_of(model)
    chosen = random_directions(model, directions, seed) if isinstance(directions, int) else list(directions)
    if len(chosen) not in (1, 2):
        raise ValueError(f"scan takes one direction (a curve) or two (a surface), got {len(chosen)}")
    evaluator = objective(model, data, loss, "train", bn_mode, batch_size, workers, resident=resident)
    if len(chosen) == 1:
        geometry = LineScan("line", span, int(grid if isinstance(grid, int) else grid[0]), precision=precision)
    else:
        nx, ny = (grid, grid) if isinstance(grid, int) else grid
        geometry = PlaneScan("plane", span, span, int(nx), int(ny), precision=precision)
        chosen = [chosen[0], orthogonalize(chosen[1], chosen[0])]
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(path) if path is not None else Path(scratch) / f"{geometry.name}.npz"
        result = run_scan(geometry, theta, chosen, {"train": evaluator}, target, {"bn_mode": bn_mode}, progress=progress)
    if geometry.kind == "line":
        shape = classify_curve(result.axes["lambda"], result.values["train_loss"])
        result.provenance["shape"] = {"train": shape.to_dict()}
    return result


def hessian(model: torch.nn.Module, data: Data, loss: Loss | Callable | None = None, top_k: int = 5, bottom_k: int = 0,
            trace_samples: int = 0, tol: float = 1e-6, dtype: torch.dtype = torch.float64, seed: int = 0,
            batch_size: int | str | None = "auto", bn_mode: str = "eval") -> dict[str, Any]:
    """Top (and bottom) eigenvalues of the Hessian of the mean loss over ``data`` by Lanczos, exact over
    the data, in ``dtype``; with ``trace_samples`` a Hutchinson trace and its standard error."""
    import copy

    model = copy.deepcopy(model).to(dtype)
    x, y = as_tensors(data)
    evaluator = objective(model, (as_dtype(x, dtype), as_dtype(y, dtype)), loss, batch_size=batch_size, bn_mode=bn_mode)
    theta = parameters_of(model)
    operator = HessianOperator.from_evaluator(evaluator, theta)
    result: dict[str, Any] = {"parameters": operator.dim}
    for which, k in (("top", top_k), ("bottom", bottom_k)):
        if k > 0:
            values, vectors, record = hessian_eigenpairs(operator, k, which, tol, seed=seed, as_dicts=True)
            result[f"{which}_eigenvalues"] = np.asarray(values).tolist()
            result[f"{which}_eigenvectors"] = vectors
            result[f"{which}_record"] = {k: v for k, v in record.items() if isinstance(v, (int, float, str, list))}
    if trace_samples:
        result["trace"] = hutchinson_trace(operator, int(trace_samples), seed)
    result["num_products"] = operator.num_products
    return result


PRESETS = {"w_peak": mining_objectives.WPeak, "vvv_basin": mining_objectives.VVVBasin}


def mine(model: torch.nn.Module, data: Data, loss: Loss | Callable | None = None, preset: str | Any = "w_peak",
         steps: int = 400, batch_size: int | None = 256, lr: float = 0.01, seed: int = 0, points: int = 61,
         progress: bool = False) -> dict[str, Any]:
    """Mine a direction whose curve has the preset's shape (``w_peak``, ``vvv_basin`` or a mining
    objective object), then scan it: ``{"direction", "scan", "label", "success", "trace"}``."""
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown mining preset {preset!r}: expected one of {', '.join(PRESETS)} or an objective object")
    target = PRESETS[preset]() if isinstance(preset, str) else preset
    theta = parameters_of(model)
    evaluator = objective(model, data, loss)
    miner = DirectionMiner(lambda params: torch.optim.Adam(params, lr=lr), steps, batch_size)
    start = random_directions(model, target.num_directions, seed)
    mined = miner.mine(target, evaluator, theta, start, seed, progress)
    with tempfile.TemporaryDirectory() as scratch:
        line = run_scan(LineScan("mined", target.span, points), theta, mined.directions[:1], {"train": evaluator},
                        Path(scratch) / "mined.npz", progress=progress)
    label = classify_curve(line.axes["lambda"], line.values["train_loss"]).label
    wanted = getattr(target, "label", None) or {"WPeak": "w-peak", "VVVBasin": "vvv-basin"}.get(type(target).__name__)
    return {"direction": mined.directions[0], "scan": line, "label": label, "success": label == wanted, "trace": mined.trace}
