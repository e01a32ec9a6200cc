"""Task ``interpolation``: loss and accuracy along ``(1 - t) theta_A + t theta_B`` for pairs of models.

The default pairs separate the sources of difference between two trained models (Frankle et al. 2020,
Fort et al. 2020): (a) independent runs (another seed: initialization and data order), (b) the same
initialization with another data order, (c) two children of one parent spawned at epoch s. For each
pair the task reports the barrier ``max_t L(t) - ((1 - t) L(0) + t L(1))`` of the loss and of the
error on every evaluated split, next to the pair's sign consistency SSR(A, B) (overall; per tensor in
``interpolation/<pair>.json``), each model's SSR against its own initialization, and ||A - B||.

BatchNorm: every point is evaluated with ``evaluation.bn_mode``; under ``eval`` that is model A's
running statistics all along the path (wrong towards t = 1), so use ``evaluation.bn_mode=recompute``
for BN models (Frankle et al. re-estimate the statistics at every point).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError
from ..files import write_json
from ..landscape.evaluator import has_batch_norm, parameters_of
from ..landscape.scans import InterpolationScan, run_scan
from ..measures.interpolation import barriers, check_end_points, path_direction
from ..measures.similarity import l2_distance
from ..measures.sign_consistency import sign_consistency, sign_consistency_report
from ..plots.style import model_on_data
from ..plots.valleys import plot_interpolation
from ..progress import progress_bar
from .common import Session, evaluators_for, require_accuracy, run_task, summary_head, trained_checkpoints
from .references import Checkpoints, check_reference

log = logging.getLogger(__name__)


def run_interpolation(cfg) -> dict[str, Any]:
    return run_task(cfg, _interpolation)


def check_pairs(cfg) -> dict[str, tuple[str, str]]:
    """``task.pairs`` (a list of ``[name, A, B]``) as ``{name: (A, B)}``, every reference checked before training."""
    pairs = {}
    for item in cfg.task.pairs or []:
        item = [str(v) for v in item] if not isinstance(item, str) else [item]
        if len(item) != 3 or item[1] == item[2] or item[0] in pairs:
            raise ConfigError(f"every entry of task.pairs must be [name, model A, model B] with a new name and two different "
                             f"models, e.g. [seeds, final, seed:1]; got {item}")
        for ref in item[1:]:
            check_reference(ref, cfg)
        pairs[item[0]] = (item[1], item[2])
    if not pairs:
        raise ConfigError("task.pairs is empty: give at least one pair, e.g. task.pairs=[[seeds,final,seed:1]]")
    return pairs


def check_grid(cfg, name: str = "interpolation") -> InterpolationScan:
    """The t grid, which must contain t = 0 and t = 1 (the barrier needs both end points)."""
    scan = InterpolationScan(name, "A", "B", cfg.task.span, int(cfg.task.points))
    check_end_points(scan.axes()["lambda"])
    return scan


def interpolate(session: Session, refs: Checkpoints, name: str, ref_a: str, ref_b: str, grid: InterpolationScan, folder: str) -> dict[str, Any]:
    """Scan one pair (resumable: a finished curve file is reused) and measure its barrier and SSR."""
    cfg, out = session.cfg, session.output_dir
    a, b = refs.resolve(ref_a), refs.resolve(ref_b)
    model = refs.model(a.checkpoint)  # evaluated with A's buffers (BatchNorm statistics under bn_mode=eval)
    theta_a, theta_b = parameters_of(model), refs.params(b.checkpoint)
    evaluators = evaluators_for(session, model)
    scan = InterpolationScan(name, ref_a, ref_b, grid.span, grid.points)
    path = out / "curves" / folder / f"{name}.npz"
    provenance = session.provenance(start=str(a.checkpoint), end=str(b.checkpoint), bn_mode=cfg.evaluation.bn_mode)
    result = run_scan(scan, theta_a, [path_direction(theta_a, theta_b)], evaluators, path, provenance,
                      int(cfg.evaluation.points_per_batch), progress=False)
    ssr = sign_consistency_report(theta_a, theta_b)
    found = barriers(result.axes["lambda"], result.values)
    ssr_init = {side: (None if r.init is None else sign_consistency(theta, refs.params(r.init)))
                for side, r, theta in (("a", a, theta_a), ("b", b, theta_b))}
    entry = {
        "a": ref_a, "b": ref_b, "checkpoint_a": str(a.checkpoint), "checkpoint_b": str(b.checkpoint),
        "barrier": {key: value["barrier"] for key, value in found.items()},
        "end_points": {key: [value["start"], value["end"]] for key, value in found.items()},  # the two models' own loss and error
        "ssr": ssr["overall"], "ssr_init": ssr_init, "distance": l2_distance(theta_a, theta_b),
        "batch_norm": has_batch_norm(model), "file": str(path),
    }
    write_json(out / folder / f"{name}.json", {**entry, "barrier_detail": found, "ssr_per_tensor": ssr["per_tensor"], "coordinates": ssr["coordinates"]})
    return {**entry, "curves": result.values, "t": result.axes["lambda"]}


def _interpolation(session: Session) -> dict[str, Any]:
    require_accuracy(session, "interpolation")
    cfg, out = session.cfg, session.output_dir
    grid, pairs = check_grid(cfg), check_pairs(cfg)
    run = trained_checkpoints(session)
    refs = Checkpoints(session, run)
    entries = {}
    for name, (ref_a, ref_b) in progress_bar(pairs.items(), desc="interpolation", disable=not cfg.progress):
        entries[name] = interpolate(session, refs, name, ref_a, ref_b, grid, "interpolation")
    ts = grid.axes()["lambda"]
    figures = plot_interpolation(ts, {name: e["curves"] for name, e in entries.items()}, out / "figures" / "interpolation",
                                 title=f"{model_on_data(cfg)}: linear interpolation between models (BN: {cfg.evaluation.bn_mode})",
                                 ends=pairs)
    session.tracker.log_figures("interpolation", figures)
    plain = {name: {k: v for k, v in e.items() if k not in ("curves", "t")} for name, e in entries.items()}
    lines = [pair_line(name, e) for name, e in plain.items()]
    if any(e["batch_norm"] for e in plain.values()) and cfg.evaluation.bn_mode != "recompute":
        warning = (f"the model has BatchNorm and evaluation.bn_mode={cfg.evaluation.bn_mode}: points use model A's statistics; "
                   "evaluation.bn_mode=recompute re-estimates them along the path")
        log.warning(warning)
        lines.append("warning: " + warning)
    return {
        **summary_head(session, "interpolation"),
        "bn_mode": cfg.evaluation.bn_mode,
        "span": list(grid.span),
        "points": grid.points,
        "pairs": plain,
        "headline": lines,
        "figures": [str(f) for f in figures],
    }


def pair_line(name: str, entry: dict[str, Any]) -> str:
    """``seeds (final vs seed:1): barrier loss train 0.41 / test 0.52, error train 3.1 / test 4.0 points; SSR 0.52``."""
    barrier = entry["barrier"]
    splits = [key.removesuffix("_loss") for key in barrier if key.endswith("_loss")]
    loss = " / ".join(f"{s} {barrier[f'{s}_loss']:.4f}" for s in splits)
    error = " / ".join(f"{s} {100 * barrier[f'{s}_error']:.2f}" for s in splits)
    return f"{name} ({entry['a']} vs {entry['b']}): barrier loss {loss}, error {error} points; SSR {entry['ssr']:.4f}, distance {entry['distance']:.3g}"

