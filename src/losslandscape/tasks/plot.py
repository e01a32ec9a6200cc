"""Task ``plot``: redraw a saved curve, surface or ring from its ``.npz`` with other contour levels,
limits or scales, without recomputing anything (Li et al.'s ``plot_2D.py`` for this project's files).

The file is read with :meth:`ScanResult.load`; limits crop the grid to a window, ``vmin``/``vmax``
clip the drawn loss, and the figures go into the job's ``figures/`` folder under the file's name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..files import write_json
from ..landscape.scans import ScanResult
from ..plots.interactive import surface_figure, surface_splits, write_html
from ..plots.landscape import plot_contour, plot_curves, plot_ring, plot_surface


def run_plot(cfg: DictConfig) -> dict[str, Any]:
    task = cfg.task
    if task.file is None:
        raise ValueError("task=plot needs task.file=<a curves/ or surfaces/ .npz of an earlier run>, "
                         "e.g. task.file=outputs/<date>/<time>/surfaces/plane.npz")
    path = Path(to_absolute_path(str(task.file)))
    if not path.is_file():
        raise ValueError(f"task.file={task.file} does not exist: give a result file of an earlier run, "
                         "e.g. task.file=outputs/<date>/<time>/surfaces/plane.npz")
    result = ScanResult.load(path)
    check_settings(task, result)
    out = Path(to_absolute_path(str(cfg.output_dir)))
    stem = out / "figures" / str(task.stem or path.stem)
    figures = redraw(window(result, task.xlim, task.ylim), task, stem)
    summary = {"task": "plot", "file": str(path), "kind": result.kind, "figures": [str(f) for f in figures],
               "settings": OmegaConf.to_container(task, resolve=True)}
    write_json(out / "summary.json", summary)
    print(f"== plot: {result.kind} {result.name} from {path}\n   figures: {', '.join(f.name for f in figures)} in {stem.parent}")
    return summary


def check_settings(task: DictConfig, result: ScanResult) -> None:
    """One line naming the setting that does not fit this file, before anything is drawn."""
    surface = set(result.axes) == {"x", "y"}
    if not surface and (task.vmin is not None or task.vmax is not None or task.ylim is not None):
        raise ValueError(f"task.vmin, task.vmax and task.ylim apply to surfaces; {result.name} is a {result.kind} scan "
                         "(use task.xlim and task.log_scale)")
    if result.kind == "ring" and task.xlim is not None:
        raise ValueError(f"task.xlim does not apply to the ring scan {result.name}: it has no alpha axis")
    splits = surface_splits(result)
    if task.split is not None and str(task.split) not in splits:
        raise ValueError(f"task.split={task.split} is not in {result.name}: it has {', '.join(splits)}")
    for key in ("xlim", "ylim"):
        limits = task.get(key)
        if limits is not None and (len(limits) != 2 or not float(limits[0]) < float(limits[1])):
            raise ValueError(f"task.{key} must be [low, high] with low < high, got {list(limits)}")
    if task.vmin is not None and task.vmax is not None and not float(task.vmin) < float(task.vmax):
        raise ValueError(f"task.vmin must be below task.vmax, got vmin={task.vmin}, vmax={task.vmax}")
    if isinstance(task.levels, (list, ListConfig)) and task.log_scale and min(float(v) for v in task.levels) <= 0:
        raise ValueError(f"task.levels must be positive losses with task.log_scale=true, got {list(task.levels)}")


def window(result: ScanResult, xlim, ylim) -> ScanResult:
    """The part of the grid inside ``xlim`` (first axis: alpha or lambda) and ``ylim`` (beta)."""
    names = list(result.axes)
    keep = {}
    for name, limits in zip(names[:2], (xlim, ylim)):
        axis = result.axes[name]
        keep[name] = np.ones(len(axis), bool) if limits is None else (axis >= float(limits[0])) & (axis <= float(limits[1]))
        if keep[name].sum() < 2:
            raise ValueError(f"the window {list(limits)} keeps fewer than 2 of the {len(axis)} points of {name} "
                             f"({axis[0]:g} to {axis[-1]:g})")
    if result.kind == "ring":
        return result
    if len(names) == 1:
        values = {k: v[keep[names[0]]] for k, v in result.values.items()}
    else:  # grids are (y, x)
        values = {k: v[np.ix_(keep[names[1]], keep[names[0]])] for k, v in result.values.items()}
    return dataclasses.replace(result, axes={n: result.axes[n][keep[n]] for n in names}, values=values)


def clipped(result: ScanResult, vmin, vmax) -> ScanResult:
    """The losses drawn inside ``[vmin, vmax]`` (a surface's rim far above the basin no longer flattens it)."""
    if vmin is None and vmax is None:
        return result
    low = -np.inf if vmin is None else float(vmin)
    high = np.inf if vmax is None else float(vmax)
    values = {k: (np.clip(v, low, high) if k.endswith("_loss") else v) for k, v in result.values.items()}  # nan stays nan
    return dataclasses.replace(result, values=values)


def contour_levels(levels, log_scale: bool):
    """A count, or a list of loss values (as log10 when the heights are log10)."""
    if isinstance(levels, (list, ListConfig)):
        values = np.asarray([float(v) for v in levels])
        return np.log10(values) if log_scale else values
    return int(levels)


def redraw(result: ScanResult, task: DictConfig, stem: Path) -> list[Path]:
    log_scale = bool(task.log_scale)
    split = str(task.split) if task.split is not None else surface_splits(result)[0]
    if len(result.axes) == 1:
        xlabel = "t" if result.kind == "interpolation" else r"$\lambda$"
        return plot_curves([result], stem, log_scale=log_scale, xlabel=xlabel)
    if result.kind == "ring":
        return plot_ring(result, stem, split, log_scale)
    result = clipped(result, task.vmin, task.vmax)
    figures = plot_contour(result, f"{stem}_contour", split, contour_levels(task.levels, log_scale), log_scale)
    figures += plot_surface(result, f"{stem}_surface", split, log_scale)
    return figures + [write_html(surface_figure(result, log_scale), f"{stem}.html")]
