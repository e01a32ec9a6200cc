"""What a W&B comparison dashboard needs: the same training lines from a run that reused cached checkpoints
as from one that trained, and sweep groups that say the day as well as the time."""

from __future__ import annotations

import pytest

from conftest import TINY, compose_config
from losslandscape.tasks.landscape import run_landscape
from losslandscape.tasks.train import run_train
from losslandscape.tracking.wandb_records import finished_run_file, logged_history
from losslandscape.tracking.wandb_tracker import sweep_group

LINE_ONLY = [o for o in TINY if not o.startswith("scan.plane")]
CURVES = ["train/loss_epoch", "train/accuracy", "test/loss", "test/accuracy"]


def per_epoch(rows: list[dict]) -> dict[int, dict[str, float]]:
    """``{epoch: {key: value}}`` of the training curves in a run's logged rows."""
    found: dict[int, dict[str, float]] = {}
    for row in rows:
        if "epoch" in row and any(key in row for key in CURVES):
            found.setdefault(int(row["epoch"]), {}).update({key: row[key] for key in CURVES if key in row})
    return found


def test_a_run_on_cached_checkpoints_logs_the_training_curves_a_live_run_logged(tmp_path):
    wandb = ["logger=wandb", "logger.mode=offline"]
    live_cfg = compose_config(tmp_path, [*LINE_ONLY, "task=train", *wandb, f"output_dir={tmp_path / 'live'}"])
    run_train(live_cfg)
    cached_cfg = compose_config(tmp_path, [*LINE_ONLY, "scan=line", *wandb, f"output_dir={tmp_path / 'cached'}"])
    assert run_landscape(cached_cfg)["reused_checkpoints"] is True

    live = per_epoch(logged_history(finished_run_file(tmp_path / "live")))
    cached = per_epoch(logged_history(finished_run_file(tmp_path / "cached")))
    assert sorted(cached) == [0, 1] and sorted(live) == [0, 1]  # Lightning's epoch index
    for epoch in (0, 1):  # the same keys, the same numbers as Lightning logged while training
        assert set(cached[epoch]) == set(CURVES)
        for key in CURVES:
            assert cached[epoch][key] == pytest.approx(live[epoch][key], rel=1e-6), (epoch, key)


def test_a_sweep_group_names_the_day_and_the_time():
    assert sweep_group("outputs/multirun/2026-12-02/07-05-58") == "2026-12-02/07-05-58"
    assert sweep_group("outputs/multirun/2026-12-03/07-05-58") != sweep_group("outputs/multirun/2026-12-02/07-05-58")
    assert sweep_group("sweep") == "sweep"


# --- task=dashboard: the comparison view of a real offline sweep --------------------------------------------

from sweep_fixture import JOBS, tiny_sweep  # noqa: E402,F401  (the session fixture)

from losslandscape.files import read_json  # noqa: E402
from losslandscape.tasks.dashboard import run_dashboard  # noqa: E402
from losslandscape.tracking.dashboard import build_report  # noqa: E402
from losslandscape.tracking.sweep_jobs import sweep_jobs  # noqa: E402
from losslandscape.tracking.wandb_records import logged_run, logged_summary  # noqa: E402

# one pytest-xdist worker runs every test of the sweep, so the sweep itself runs once
pytestmark = pytest.mark.xdist_group("tiny_sweep")


def dashboard_of(tmp_path, sweep):
    cfg = compose_config(tmp_path, ["task=dashboard", f"task.sweep_dir={sweep}", "logger.mode=offline"])
    summary = run_dashboard(cfg)
    return summary, read_json(sweep / "dashboard.json")


def test_the_offline_dashboard_spec_groups_the_sweeps_runs_by_its_swept_keys(tmp_path, tiny_sweep):
    summary, spec = dashboard_of(tmp_path, tiny_sweep)
    assert summary["url"] is None and summary["runs"] == JOBS  # offline: the spec, no upload
    assert spec["group"] == sweep_group(tiny_sweep) == "2026-12-02/10-00-00"
    assert spec["swept"] == [{"override": "task", "config": "config.task.name"}, {"override": "seed", "config": "config.seed"},
                             {"override": "direction", "config": "config.direction._target_"}]
    run_ids = {logged_run(job.wandb_run_file())["id"] for job in sweep_jobs(tiny_sweep)}
    assert {run["id"] for run in spec["runs"]} == run_ids and len(run_ids) == JOBS
    for grid in spec["grids"]:  # every panel grid shows this sweep's runs only, grouped by the swept keys
        assert grid["filters"].startswith("Metric(\"Group\") == '2026-12-02/10-00-00'")
        assert grid["groupby"] == ["config.task.name", "config.seed", "config.direction._target_"]


def test_the_dashboards_panels_are_chosen_from_what_the_runs_logged(tmp_path, tiny_sweep):
    _, spec = dashboard_of(tmp_path, tiny_sweep)
    grids = {grid["title"]: grid for grid in spec["grids"]}
    logged = [logged_summary(job.wandb_run_file()) for job in sweep_jobs(tiny_sweep)]
    kinds = {s["direction/type"] for s in logged if "direction/type" in s}
    assert kinds == {"NoiseDirection", "SignConsistentDirection"}
    curves = [title for title in grids if title.startswith("1D curves along")]
    assert sorted(curves) == ["1D curves along filter-normalized gaussian noise directions",  # one grid per direction type,
                              "1D curves along filter-normalized gaussian sign-consistent noise (ratio 1.0) directions"]  # in words
    for title in curves:
        tables = {panel["table"] for panel in grids[title]["panels"]}
        assert tables == {"line/plot_train_loss_table", "line/plot_test_loss_table"}
        assert all(any(f"{table}/_type" in s for s in logged) for table in tables)  # logged by some run
    table = grids["Centre losses and shape labels"]
    assert "summary:scans/line/shape/train/label" in table["columns"] and "summary:scans/line/center/test_loss" in table["columns"]
    hessian = {panel["title"]: panel for panel in grids["Hessian against the swept keys"]["panels"]}
    assert hessian["hessian/top_eigenvalue against seed"] == {"kind": "scatter", "x": "config.seed", "y": "hessian/top_eigenvalue",
                                                              "title": "hessian/top_eigenvalue against seed"}
    assert "hessian/trace by direction" in hessian and not any("by task" in t for t in hessian)  # task only splits other runs
    assert all(isinstance(s.get("hessian/top_eigenvalue"), float) for s in logged if "hessian/trace" in s)
    barriers = {p["metrics"][0] for p in grids["Barriers and mode connectivity"]["panels"]}  # the interpolation runs'
    assert barriers == {f"pairs/init_to_final/barrier/{split}_{m}" for split in ("train", "test") for m in ("loss", "error")}
    assert "mode_connectivity" not in str(grids)  # no run measured it (task=taxonomy does)
    assert grids["Surfaces"]["panels"][0]["keys"] == ["plane/contour", "plane/interactive"]


def test_the_spec_builds_a_wandb_workspaces_report_without_network(tmp_path, tiny_sweep):
    import wandb_workspaces.reports.v2 as wr

    _, spec = dashboard_of(tmp_path, tiny_sweep)
    report = build_report(spec, "my-team")
    grids = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    assert len(grids) == len(spec["grids"]) and report.project == "losslandscape" and report.entity == "my-team"
    for grid, section in zip(grids, spec["grids"]):
        (runset,) = grid.runsets
        assert runset.groupby == section["groupby"] and runset.entity == "my-team"
        assert [type(p).__name__ for p in grid.panels] == [
            {"line": "LinePlot", "curve": "CustomChart", "bar": "BarPlot", "scatter": "ScatterPlot", "comparer": "RunComparer",
             "media": "MediaBrowser"}[p["kind"]] for p in section["panels"]]
    charts = [p for g in grids for p in g.panels if isinstance(p, wr.CustomChart)]
    assert {c.query["summaryTable"]["tableKey"] for c in charts} == {"line/plot_train_loss_table", "line/plot_test_loss_table"}
