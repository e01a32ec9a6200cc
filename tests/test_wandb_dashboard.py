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
