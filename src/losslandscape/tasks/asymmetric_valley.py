"""Task ``asymmetric_valley``: does sign-consistent noise see a flatter side of the valley?

Li et al. 2024 (arXiv:2405.12489) perturb a trained model along noise whose sign agrees with theta on
a fraction r of the coordinates and find the 1D curve flatter on the sign-consistent side. For each
noise distribution and each r this task scans K directions over lambda in ``span`` and reports the
valley asymmetry, mean over lambda > 0 minus mean over lambda < 0, of the loss and of the error
(mean and standard deviation over the K directions), with the measured SSR(direction, theta).

Direction k uses the same seed for every r (and every r's sign flips are nested: a coordinate made
sign-consistent at r stays so at every larger r), so the curves of one k differ only by r.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..directions.context import direction_seed
from ..directions.noise import DISTRIBUTIONS, SignConsistentDirection
from ..files import write_json
from ..landscape.scans import LineScan, run_scan
from ..measures.sign_consistency import perturbed_names, sign_consistency, valley_asymmetry
from ..plots.style import model_on_data
from ..plots.valleys import plot_asymmetry, plot_valley_curves
from ..progress import progress_bar
from .common import Session, evaluators_for, require_accuracy, run_task, summary_head
from .references import Checkpoints, scanned_model

METRICS = ("loss", "error")


def run_asymmetric_valley(cfg) -> dict[str, Any]:
    return run_task(cfg, _asymmetric_valley)


def check_settings(cfg) -> dict[str, Any]:
    """The task's settings, validated (one clear error each) before anything is trained."""
    task = cfg.task
    ratios = [float(r) for r in task.ratios]
    if not ratios or any(not 0.0 <= r <= 1.0 for r in ratios) or len(set(ratios)) != len(ratios):
        raise ConfigError(f"task.ratios must be distinct sign-consistency ratios in [0, 1], got {list(task.ratios)}")
    distributions = [str(d) for d in task.distributions]
    unknown = [d for d in distributions if d not in DISTRIBUTIONS]
    if not distributions or unknown or len(set(distributions)) != len(distributions):
        raise ConfigError(f"task.distributions must be distinct names among {', '.join(DISTRIBUTIONS)}, got {list(task.distributions)}")
    if int(task.directions) < 1:
        raise ConfigError(f"task.directions (K) must be at least 1, got {task.directions}")
    scan = LineScan("asymmetric_valley", task.span, int(task.points))
    lambdas = scan.axes()["lambda"]
    if not ((lambdas > 0).any() and (lambdas < 0).any()):
        raise ConfigError(f"task.span={list(task.span)} must cover both signs of lambda (e.g. [-1, 1]) to compare the two sides")
    if str(task.split) not in cfg.evaluation.splits:
        raise ConfigError(f"task.split={task.split} is not evaluated: evaluation.splits is {list(cfg.evaluation.splits)}")
    SignConsistentDirection(1.0, distribution=distributions[0], normalization=str(task.normalization), bias_bn=str(task.bias_bn))
    return {"ratios": ratios, "distributions": distributions, "directions": int(task.directions), "scan": scan}


def _asymmetric_valley(session: Session) -> dict[str, Any]:
    require_accuracy(session, "asymmetric_valley")
    cfg, task, out = session.cfg, session.cfg.task, session.output_dir
    settings = check_settings(cfg)
    ratios, distributions, count, scan = settings["ratios"], settings["distributions"], settings["directions"], settings["scan"]
    checkpoints = Checkpoints(session)
    model, theta, checkpoint_path = scanned_model(session, checkpoints)
    evaluators = evaluators_for(session, model)
    lambdas = scan.axes()["lambda"]
    provenance = session.provenance(checkpoint=str(checkpoint_path), train_key=checkpoints.train_key, bn_mode=cfg.evaluation.bn_mode)

    rows = []  # one per (distribution, r, k): asymmetry of every split's loss and error, and the SSR
    examples: dict[str, dict[float, np.ndarray]] = {d: {} for d in distributions}
    items = [(d, r, k) for d in distributions for r in ratios for k in range(count)]
    for distribution, ratio, k in progress_bar(items, desc="asymmetric valley", disable=not cfg.progress):
        maker = SignConsistentDirection(ratio, distribution=distribution, normalization=str(task.normalization),
                                        bias_bn=str(task.bias_bn), scale=float(task.scale))
        seed = direction_seed(int(cfg.seed), k)
        direction = maker.sample(theta, seed)
        ssr = sign_consistency(direction, theta, perturbed_names(direction))
        name = f"{distribution}_r{ratio:g}_d{k}"
        part = LineScan(name, scan.span, scan.points)
        result = run_scan(part, theta, [direction], evaluators, out / "curves" / "asymmetric_valley" / f"{name}.npz",
                          {**provenance, "direction": {**maker.describe(), "seed": seed}, "ssr": ssr},
                          int(cfg.evaluation.points_per_batch), progress=False)
        row = {"distribution": distribution, "ratio": ratio, "direction": k, "seed": seed, "ssr": ssr}
        for split in evaluators:
            row[f"{split}_loss"] = valley_asymmetry(lambdas, result.values[f"{split}_loss"])
            row[f"{split}_error"] = valley_asymmetry(lambdas, 1.0 - result.values[f"{split}_accuracy"])
        rows.append(row)
        if k == 0:
            examples[distribution][ratio] = result.values[f"{task.split}_loss"]

    keys = [f"{split}_{metric}" for split in evaluators for metric in METRICS]
    table = summarize(rows, distributions, ratios, [*keys, "ssr"])
    write_json(out / "asymmetric_valley" / "asymmetry.json", {"rows": rows, "table": table, "ratios": ratios, "lambdas": lambdas})
    context = model_on_data(session.provenance()["config"])
    figures = plot_asymmetry(ratios, table, str(task.split), count, out / "figures" / "valley_asymmetry", context)
    figures += plot_valley_curves(lambdas, examples, str(task.split), out / "figures" / "valley_curves", context)
    session.tracker.log_figures("asymmetric_valley", figures)
    return {
        **summary_head(session, "asymmetric_valley"),
        "checkpoint": str(checkpoint_path),
        "bn_mode": cfg.evaluation.bn_mode,
        "ratios": ratios,
        "directions": count,
        "span": list(scan.span),
        "points": scan.points,
        "asymmetry": table,
        "headline": headline(table, ratios, str(task.split)),
        "figures": [str(f) for f in figures],
    }


def summarize(rows: list[dict], distributions: list[str], ratios: list[float], keys: list[str]) -> dict:
    """``{distribution: {key: {"mean": [per r], "std": [per r]}}}``; std over the K directions (ddof=1, 0 for K = 1)."""
    table = {}
    for distribution in distributions:
        table[distribution] = {}
        for key in keys:
            means, stds = [], []
            for ratio in ratios:
                values = np.array([row[key] for row in rows if row["distribution"] == distribution and row["ratio"] == ratio])
                means.append(float(values.mean()))
                stds.append(float(values.std(ddof=1)) if len(values) > 1 else 0.0)
            table[distribution][key] = {"mean": means, "std": stds}
    return table


def headline(table: dict, ratios: list[float], split: str) -> list[str]:
    lines = [f"valley asymmetry of the {split} loss, mean(lambda > 0) - mean(lambda < 0), mean +- std over directions:"]
    for distribution, rows in table.items():
        stats = rows[f"{split}_loss"]
        cells = ", ".join(f"r={r:g} {m:+.4f}+-{s:.4f}" for r, m, s in zip(ratios, stats["mean"], stats["std"]))
        lines.append(f"  {distribution}: {cells}")
    for distribution, rows in table.items():
        stats = rows[f"{split}_error"]
        lines.append(f"  {distribution} error (points): " + ", ".join(f"r={r:g} {100 * m:+.2f}" for r, m in zip(ratios, stats["mean"])))
    return lines
