"""Task ``phase_plot``: the phase diagram of Yang et al. 2021 from a sweep of ``task=taxonomy`` jobs.

Reads every job folder of a multirun directory (its ``summary.json``; the load and temperature of
the job come from the training config stored in the summary, else from ``.hydra/overrides.yaml``),
groups the jobs into cells (load value x temperature value), averages every measure over the jobs
(seeds) of a cell, and draws one heat map per measure plus a grid of all of them. The cell table
goes to ``phase/cells.csv`` and ``phase/cells.json``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.utils import to_absolute_path
from omegaconf import OmegaConf

from ..errors import ConfigError
from ..files import atomic_path, write_json
from ..plots.taxonomy import plot_phase, plot_phase_grid
from .common import Session, run_task
from .taxonomy import MEASURES

SWEEP_ROOT = "outputs/multirun"
MAX_DEPTH = 4  # how deep under outputs/multirun job folders are looked for


def run_phase_plot(cfg) -> dict[str, Any]:
    return run_task(cfg, _phase_plot)


def _phase_plot(session: Session) -> dict[str, Any]:
    task, out = session.cfg.task, session.output_dir
    load_key, temperature_key = str(task.load), str(task.temperature)
    if load_key == temperature_key:
        raise ConfigError(f"task.load and task.temperature are both {load_key!r}: a phase plot needs two different config keys")
    sweep = sweep_directory(task.sweep_dir)
    jobs, unfinished = collect_jobs(sweep, load_key, temperature_key)
    available = [m for m in MEASURES if all(m in job["measures"] for job in jobs)]
    measures = list(task.measures) if task.measures else available
    missing = [m for m in measures if m not in available]
    if missing:
        raise ConfigError(f"measures {missing} are not in every job's summary of {sweep}; available: {available}")
    table = phase_table(jobs, measures)
    loads, temperatures, counts = table["loads"], table["temperatures"], table["counts"]

    write_table(out / "phase" / "cells.csv", table, load_key, temperature_key)
    write_json(out / "phase" / "cells.json", {"load": load_key, "temperature": temperature_key, "cells": table["cells"],
                                              "jobs": [job["folder"] for job in jobs], "sweep_dir": str(sweep),
                                              "provenance": session.provenance(sweep_dir=str(sweep))})
    figures = []
    for measure in measures:
        figures += plot_phase(loads, temperatures, table["means"][measure], counts, measure, load_key, temperature_key,
                              out / "figures" / f"phase_{measure}")
    what = sorted({f"{job['model']} on {job['dataset']}" for job in jobs})
    figures += plot_phase_grid(loads, temperatures, {m: table["means"][m] for m in measures}, counts, load_key, temperature_key,
                               out / "figures" / "phase", title=f"{', '.join(what)}: mean over seeds per cell")
    session.tracker.log_figures("phase", figures)
    session.tracker.log_files("phase-cells", "table", [out / "phase" / "cells.csv", out / "phase" / "cells.json"], {"sweep_dir": str(sweep)})

    varying = other_varying_overrides(jobs, {load_key, temperature_key, "seed"})
    headline = [f"{len(jobs)} jobs in {len(loads)} x {len(temperatures)} cells ({load_key} x {temperature_key}), "
                f"{int(counts.min())}-{int(counts.max())} per cell, from {sweep}"]
    if unfinished:
        headline.append(f"{len(unfinished)} job folders have no summary yet (unfinished or failed): {unfinished[:3]}")
    if varying:
        headline.append(f"warning: other overrides also vary between jobs and are averaged over: {varying}")
    return {
        "task": "phase_plot",
        "dataset": ", ".join(sorted({job["dataset"] for job in jobs})),
        "model": ", ".join(sorted({job["model"] for job in jobs})),
        "sweep_dir": str(sweep),
        "jobs": len(jobs),
        "load": load_key,
        "temperature": temperature_key,
        "loads": loads,
        "temperatures": temperatures,
        "measures": measures,
        "cells": {m: {cell_name(c["load"], c["temperature"]): c[m]["mean"] for c in table["cells"]} for m in measures},
        "figures": [str(f) for f in figures],
        "headline": headline,
    }


def sweep_directory(setting) -> Path:
    """``task.sweep_dir``, or the multirun folder whose taxonomy job finished last."""
    if setting is not None:
        sweep = Path(to_absolute_path(str(setting)))
        if not sweep.is_dir():
            raise ConfigError(f"task.sweep_dir={setting} does not exist; run the sweep first, e.g. "
                             "`python run.py experiment=phase_sweep logger=none`, or point task.sweep_dir at its folder")
        return sweep
    root = Path(to_absolute_path(SWEEP_ROOT))
    newest: dict[Path, float] = {}
    for depth in range(1, MAX_DEPTH + 1):
        for path in root.glob("/".join(["*"] * depth) + "/summary.json"):
            if _read_summary(path).get("task") == "taxonomy":
                newest[path.parent.parent] = max(newest.get(path.parent.parent, 0.0), path.stat().st_mtime)
    if not newest:
        raise ConfigError(f"no finished task=taxonomy job under {root}: run a sweep first "
                         "(`python run.py experiment=phase_sweep logger=none`) or set task.sweep_dir")
    return max(newest, key=newest.get)


def collect_jobs(sweep: Path, load_key: str, temperature_key: str) -> tuple[list[dict], list[str]]:
    """Every finished taxonomy job directly under ``sweep``: its axis values and measures; and the unfinished folders."""
    jobs, unfinished = [], []
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir()):
        summary = _read_summary(folder / "summary.json")
        if not summary:
            if (folder / ".hydra").is_dir():
                unfinished.append(folder.name)
            continue
        if summary.get("task") != "taxonomy":
            continue
        overrides = _read_overrides(folder)
        jobs.append({
            "folder": str(folder),
            "load": axis_value(summary, overrides, load_key, folder),
            "temperature": axis_value(summary, overrides, temperature_key, folder),
            "seed": summary.get("training_config", {}).get("seed", overrides.get("seed")),
            "overrides": overrides,
            "dataset": summary.get("dataset", "?"),
            "model": str(summary.get("model", "?")).rsplit(".", 1)[-1],
            "measures": {m: summary[m] for m in MEASURES if isinstance(summary.get(m), (int, float))},
        })
    if not jobs:
        raise ConfigError(f"no finished task=taxonomy job (a folder with summary.json) in {sweep}")
    return jobs, unfinished


def axis_value(summary: dict, overrides: dict, key: str, folder: Path):
    """The value of a dotted config key for one job: its stored training config first, then its overrides."""
    config = summary.get("training_config")
    if config is not None:
        value = OmegaConf.select(OmegaConf.create(config), key, default="__missing__")
        if value != "__missing__":
            return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if key in overrides:
        return overrides[key]
    raise ConfigError(f"job {folder} has no value for {key!r} (neither in its summary's training_config nor in "
                     f".hydra/overrides.yaml); the axes must be config keys such as model.width, dataset.train_size, "
                     f"train.batch_size or train.optimizer.lr")


def phase_table(jobs: list[dict], measures: list[str]) -> dict[str, Any]:
    """Cell means, standard deviations and counts: arrays indexed [temperature, load], and a list of cells."""
    loads = _sorted_values(job["load"] for job in jobs)
    temperatures = _sorted_values(job["temperature"] for job in jobs)
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for job in jobs:
        groups[(temperatures.index(job["temperature"]), loads.index(job["load"]))].append(job)
    shape = (len(temperatures), len(loads))
    counts = np.zeros(shape, dtype=int)
    means = {m: np.full(shape, math.nan) for m in measures}
    stds = {m: np.full(shape, math.nan) for m in measures}
    cells = []
    for (row, column), members in sorted(groups.items()):
        counts[row, column] = len(members)
        cell = {"load": loads[column], "temperature": temperatures[row], "count": len(members),
                "seeds": [job["seed"] for job in members], "folders": [job["folder"] for job in members]}
        for m in measures:
            values = np.array([job["measures"][m] for job in members], dtype=float)
            means[m][row, column] = values.mean()
            stds[m][row, column] = values.std(ddof=1) if len(values) > 1 else 0.0
            cell[m] = {"mean": float(values.mean()), "std": float(stds[m][row, column]), "values": values.tolist()}
        cells.append(cell)
    return {"loads": loads, "temperatures": temperatures, "counts": counts, "means": means, "stds": stds, "cells": cells}


def write_table(path: Path, table: dict, load_key: str, temperature_key: str) -> None:
    """One row per cell and measure: load, temperature, measure, mean, std, count."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([load_key, temperature_key, "measure", "mean", "std", "count"])
        for cell in table["cells"]:
            for m in (k for k in cell if isinstance(cell[k], dict)):
                writer.writerow([cell["load"], cell["temperature"], m, repr(cell[m]["mean"]), repr(cell[m]["std"]), cell["count"]])


def other_varying_overrides(jobs: list[dict], axes: set[str]) -> list[str]:
    keys = {k for job in jobs for k in job["overrides"]} - axes
    return sorted(k for k in keys if len({json.dumps(job["overrides"].get(k), default=str) for job in jobs}) > 1)


def cell_name(load, temperature) -> str:
    return f"load={load},temperature={temperature}"


def _sorted_values(values) -> list:
    unique = []
    for v in values:
        if v not in unique:
            unique.append(v)
    try:  # numbers in order, null (e.g. train_size=null: all the data) last
        return sorted(unique, key=lambda v: (v is None, v))
    except TypeError:
        return sorted(unique, key=lambda v: (v is None, str(v)))


def _read_summary(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_overrides(folder: Path) -> dict[str, Any]:
    """``key=value`` lines of the job's ``.hydra/overrides.yaml`` as a dict (values parsed as YAML)."""
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    parsed = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        try:
            parsed[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed[key] = value
    return parsed
