"""A W&B comparison view of one sweep, chosen from what its runs really logged, built with ``wandb-workspaces``.

Two steps, so that offline sweeps (clusters without network, CI) get the same view later:

1. :func:`dashboard_spec` reads the sweep's job folders and their ``.wandb`` records and writes a
   plain JSON spec: which runs, grouped by which config keys (the swept ones), and which panel
   grids (1D curves overlaid per direction type, centre losses and shape labels as a table,
   Hessian numbers against the swept key, barriers and mode connectivity). A panel is chosen
   only when some run logged its key.
2. :func:`build_report` turns a spec into a ``wandb_workspaces`` Report; :func:`publish` saves it
   and returns its URL. Online, ``task=dashboard`` does both at once; offline, after
   ``wandb sync``, ``python -m losslandscape.tracking.dashboard <sweep>/dashboard.json`` publishes it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from .sweep_jobs import Job, flatten, swept_keys, with_scalar_headlines
from .wandb_records import logged_history, logged_run, logged_summary

SPEC_VERSION = "losslandscape-dashboard/1"
TRAINING_CURVES = ("train/loss_epoch", "test/loss", "test/accuracy")
HESSIAN_KEYS = ("hessian/top_eigenvalue", "hessian/trace", "hessian/lens/positive_fraction")
CONNECTIVITY = re.compile(r"(^|/)(barrier|linear_barrier|bezier_barrier|mode_connectivity|linear_mode_connectivity)(/|$)")
# the direction classes' names as a title says them (a class not listed keeps its name)
DIRECTION_TYPES_IN_WORDS = {"NoiseDirection": "noise", "SignConsistentDirection": "sign-consistent noise",
                            "GradientDirection": "gradient", "HessianEigenvector": "Hessian eigenvector",
                            "BetweenCheckpoints": "between-checkpoints", "TrajectoryPCA": "trajectory-PCA",
                            "FileDirection": "loaded"}
DIRECTION_KEYS = ("direction/type", "direction/distribution", "direction/normalization", "direction/ratio")
NAMING_LEAVES = ("name", "_target_")  # the config leaves that name a group's option
CURVE_TABLE = re.compile(r"^(?P<scan>[^/]+)/plot_(?P<split>train|test)_loss_table/")  # wandb.plot.line of a 1D scan


def run_view(job: Job) -> dict[str, Any] | None:
    """What the dashboard needs of one job's W&B run: identity, config, logged keys, summary."""
    path = job.wandb_run_file()
    if path is None:
        return None
    run = logged_run(path)
    summary = with_scalar_headlines(logged_summary(path))
    history = {key for row in logged_history(path) for key in row}
    return {**run, "job": job.name, "overrides": job.overrides, "summary": summary, "history_keys": sorted(history)}


def config_key(override: str, runs: list[dict[str, Any]]) -> str:
    """The W&B config key a swept override changes: itself for a value (``seed``, ``train.optimizer.lr``);
    for a config group (``direction=sign_consistent``) the leaf that tells its options apart,
    ``name`` or ``_target_`` first."""
    leaves = [flatten(run["config"].get(override, {}), f"{override}.") if isinstance(run["config"].get(override), dict)
              else {override: run["config"].get(override)} for run in runs]
    keys = list(dict.fromkeys(k for leaf in leaves for k in leaf))
    differing = [k for k in keys if len({json.dumps(leaf.get(k), sort_keys=True) for leaf in leaves}) > 1]
    preferred = sorted((k for k in differing if k.rsplit(".", 1)[-1] in NAMING_LEAVES), key=lambda k: NAMING_LEAVES.index(k.rsplit(".", 1)[-1]))
    return f"config.{(preferred or differing or [override])[0]}"


def numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
        return True
    except (TypeError, ValueError):
        return False


def dashboard_spec(jobs: list[Job], title: str | None = None) -> dict[str, Any]:
    """The view of a sweep as a JSON-ready dict (see the module's docstring)."""
    runs = [view for view in map(run_view, jobs) if view is not None]
    if not runs:
        raise FileNotFoundError(f"no W&B run under {jobs[0].folder.parent}/*/wandb: run the sweep with logger=wandb")
    swept = swept_keys(jobs)
    groupby = [config_key(key, runs) for key in swept]
    group = runs[0]["group"]
    base = f"Metric(\"Group\") == '{group}'" if group else ""
    grids = [section for section in (training_grid(runs, base, groupby), *curve_grids(runs, base, groupby),
                               table_grid(runs, base, groupby), hessian_grid(runs, base, groupby, swept),
                               connectivity_grid(runs, base, groupby), surface_grid(runs, base, groupby)) if section]
    return {
        "spec": SPEC_VERSION,
        "title": title or f"Sweep {group or jobs[0].folder.parent.name}" + (f": {', '.join(swept)}" if swept else ""),
        "project": runs[0]["project"], "entity": runs[0]["entity"], "group": group,
        "swept": [{"override": key, "config": config} for key, config in zip(swept, groupby)],  # a list: JSON files sort dict keys
        "runs": [{k: run[k] for k in ("job", "id", "name", "overrides")} for run in runs],
        "grids": grids,
    }


def grid(title: str, filters: str, groupby: list[str], panels: list[dict[str, Any]], columns: list[str] = ()) -> dict[str, Any]:
    return {"title": title, "filters": filters, "groupby": groupby, "columns": list(columns), "panels": panels}


def training_grid(runs, base, groupby):
    logged = [key for key in TRAINING_CURVES if any(key in run["history_keys"] for run in runs)]
    panels = [{"kind": "line", "x": "epoch", "y": [key], "title": key} for key in logged]
    return grid("Training curves", base, groupby, panels) if panels else None


def direction_kind(summary: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What tells direction types apart in a run's summary: class, distribution, normalization (and ratio)."""
    return tuple((key, summary[key]) for key in DIRECTION_KEYS if key in summary)


def describe_kind(kind: tuple[tuple[str, Any], ...]) -> str:
    """``filter-normalized gaussian noise``: a direction type in the words of its settings."""
    found = dict(kind)
    words = [f"{found['direction/normalization']}-normalized" if "direction/normalization" in found else "",
             str(found.get("direction/distribution", "")), type_in_words(str(found.get("direction/type", ""))),
             f"(ratio {found['direction/ratio']})" if "direction/ratio" in found else ""]
    return " ".join(w for w in words if w)


def type_in_words(name: str) -> str:
    """``SignConsistentDirection`` -> ``sign-consistent noise``: a direction class as a reader says it."""
    return DIRECTION_TYPES_IN_WORDS.get(name, name)


def curve_grids(runs, base, groupby) -> list[dict[str, Any]]:
    """One grid per direction type, its runs' 1D curves overlaid (W&B draws a custom chart's table of every run in the run set)."""
    grids = []
    kinds = list(dict.fromkeys(direction_kind(run["summary"]) for run in runs if "direction/type" in run["summary"]))
    for kind in kinds:
        tables = sorted({m.group(0)[:-1] for run in runs if direction_kind(run["summary"]) == kind
                         for key in run["summary"] for m in [CURVE_TABLE.match(key)] if m})
        words = describe_kind(kind)
        panels = [{"kind": "curve", "table": table, "x": "lambda", "y": f"{split}_loss",
                   "title": f"{table.split('/')[0]}: {split} loss along {words} directions"}
                  for table in tables for split in [CURVE_TABLE.match(table + "/")["split"]]]
        conditions = [base] + [f"SummaryMetric(\"{key}\") == {json.dumps(value)}" for key, value in kind]
        if panels:
            grids.append(grid(f"1D curves along {words} directions", " and ".join(c for c in conditions if c), groupby, panels))
    return grids


def table_grid(runs, base, groupby):
    """Centre losses and shape labels: the run set's table shows them as pinned columns, the comparer side by side."""
    keys = sorted({k for run in runs for k in run["summary"] if re.fullmatch(r"scans/[^/]+/(center/\w+_loss|shape/\w+/label)", k)})
    if not keys:
        return None
    columns = [f"config:{key.removeprefix('config.')}.value" for key in groupby] + [f"summary:{k}" for k in keys]
    losses = [k for k in keys if "/center/" in k]
    panels = [{"kind": "comparer", "title": "centre losses and shape labels"}]
    panels += [{"kind": "bar", "metrics": losses, "title": "loss at the centre"}] if losses else []
    return grid("Centre losses and shape labels", base, groupby, panels, columns)


def hessian_grid(runs, base, groupby, swept):
    """Each Hessian number against each swept key: a scatter for numbers (lr, width, seed), bars otherwise."""
    keys = [k for k in HESSIAN_KEYS if any(isinstance(run["summary"].get(k), (int, float)) for run in runs)]
    if not keys:
        return None
    panels = []
    for key in keys:
        measured = [run for run in runs if key in run["summary"]]
        varied = [(o, c) for o, c in zip(swept, groupby) if len({run["overrides"].get(o) for run in measured}) > 1]
        for override, config in varied:  # a key swept only between other tasks' runs is no axis for this number
            if numeric([run["overrides"].get(override) for run in measured]):
                panels.append({"kind": "scatter", "x": config, "y": key, "title": f"{key} against {override}"})
            else:
                panels.append({"kind": "bar", "metrics": [key], "title": f"{key} by {override}"})
        if not varied:
            panels.append({"kind": "bar", "metrics": [key], "title": key})
    return grid("Hessian against the swept keys", base, groupby, panels)


def connectivity_grid(runs, base, groupby):
    keys = sorted({k for run in runs for k, v in run["summary"].items() if CONNECTIVITY.search(k) and isinstance(v, (int, float))})
    panels = [{"kind": "bar", "metrics": [k], "title": k} for k in keys]
    return grid("Barriers and mode connectivity", base, groupby, panels) if panels else None


def surface_grid(runs, base, groupby):
    """Surfaces of the grouped runs side by side: the rotatable plotly panels and the contour images."""
    keys = sorted({k.rsplit("/", 1)[0] for run in runs for k in run["summary"]
                   if re.fullmatch(r"[^/]+/(interactive|contour)/_type", k)})
    return grid("Surfaces", base, groupby, [{"kind": "media", "keys": keys, "title": "surfaces"}]) if keys else None


def build_report(spec: dict[str, Any], entity: str) -> Any:
    """The spec as a ``wandb_workspaces`` Report of ``entity`` (building it needs no network; saving does)."""
    import wandb_workspaces.reports.v2 as wr

    blocks = [wr.P(f"Built by losslandscape task=dashboard from {len(spec['runs'])} runs of group {spec['group']}; "
                   f"grouped by {', '.join(s['override'] for s in spec['swept']) or 'nothing (no key was swept)'}.")]
    for section in spec["grids"]:
        runset = wr.Runset(entity=entity, project=spec["project"], name=section["title"], filters=section["filters"],
                           groupby=section["groupby"], pinned_columns=section["columns"])
        blocks += [wr.H2(section["title"]), wr.PanelGrid(runsets=[runset], panels=[report_panel(p) for p in section["panels"]])]
    return wr.Report(entity=entity, project=spec["project"], title=spec["title"], width="fluid", blocks=blocks)


def report_panel(panel: dict[str, Any]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    kind, title = panel["kind"], panel.get("title")
    if kind == "line":
        return wr.LinePlot(title=title, x=panel["x"], y=panel["y"])
    if kind == "curve":
        return wr.CustomChart(query={"summaryTable": {"tableKey": panel["table"]}}, chart_name="wandb/line/v0",
                              chart_fields={"x": panel["x"], "y": panel["y"]}, chart_strings={"title": title})
    if kind == "bar":
        return wr.BarPlot(title=title, metrics=panel["metrics"], orientation="v")
    if kind == "scatter":
        return wr.ScatterPlot(title=title, x=wr.Config(panel["x"].removeprefix("config.")), y=wr.SummaryMetric(panel["y"]))
    if kind == "comparer":
        return wr.RunComparer(diff_only="split")
    if kind == "media":
        return wr.MediaBrowser(title=title, media_keys=panel["keys"])
    raise ValueError(f"unknown panel kind {kind!r} in the dashboard spec")


def publish(spec: dict[str, Any], entity: str | None = None) -> str:
    """Save the spec's report to W&B (the runs must be synced) and return its URL."""
    if entity is None:
        import wandb

        entity = spec.get("entity") or wandb.Api().default_entity
    report = build_report(spec, entity)
    report.save()
    return report.url


def main(argv: list[str]) -> None:
    """``python -m losslandscape.tracking.dashboard <sweep>/dashboard.json [entity]``: publish an offline sweep's view."""
    if not argv:
        sys.exit("usage: python -m losslandscape.tracking.dashboard <sweep>/dashboard.json [entity]")
    spec = json.loads(Path(argv[0]).read_text())
    print(f"W&B dashboard: {publish(spec, argv[1] if len(argv) > 1 else None)}")


if __name__ == "__main__":
    main(sys.argv[1:])
