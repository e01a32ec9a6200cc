"""The real Hydra configs, composed and run tiny: files, numbers, caching, errors, every group option."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException, MissingConfigException
from hydra.utils import instantiate

from conftest import CONF_DIR, compose_config
from losslandscape.landscape.scans import ScanResult
from losslandscape.tasks.landscape import run_landscape
from losslandscape.tasks.train import run_train
from losslandscape.training.checkpoints import model_from_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_default_job_writes_every_file_with_provenance(tiny_config, capsys):
    cfg = tiny_config()
    summary = run_landscape(cfg)
    out = Path(cfg.output_dir)
    assert json.loads((out / "summary.json").read_text())["scans"].keys() == {"line", "plane"}
    for name in ["curves/line.npz", "surfaces/plane.npz", "figures/line.png", "figures/line.pdf",
                 "figures/plane_contour.png", "figures/plane_contour.pdf", "figures/plane_surface.png"]:
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "directions").glob("direction*.pt"))) == 2

    line = ScanResult.load(out / "curves/line.npz")
    assert line.values["train_loss"].shape == (7,) and line.values["test_accuracy"].shape == (7,)
    assert line.provenance["bn_mode"] == "eval"
    assert line.provenance["config"]["model"]["_target_"] == "losslandscape.models.cnn.SmallCNN"
    assert line.provenance["versions"]["torch"] == torch.__version__
    plane = ScanResult.load(out / "surfaces/plane.npz")
    assert plane.values["train_loss"].shape == (3, 5)

    # the center of both scans is the trained model, evaluated independently here
    model = model_from_checkpoint(summary["checkpoint"])
    data = instantiate(cfg.dataset)
    with torch.no_grad():
        truth = torch.nn.functional.cross_entropy(model(data.train_x), data.train_y).item()
    assert line.center_value("train_loss") == pytest.approx(truth, rel=1e-5)
    assert plane.center_value("train_loss") == pytest.approx(truth, rel=1e-5)
    assert summary["train_accuracy"] > 0.5  # two epochs on digits already beat chance (0.1) by far
    printed = capsys.readouterr().out
    assert "accuracy: train" in printed and f"results: {out}" in printed


def test_trained_checkpoints_are_reused_when_only_scan_settings_change(tiny_config):
    first = run_train(tiny_config())
    directory = Path(first["checkpoint_dir"])
    assert [p.name for p in map(Path, first["checkpoints"])] == ["init.pt", "epoch_001.pt", "epoch_002.pt", "final.pt"]
    stamp = (directory / "final.pt").stat().st_mtime_ns
    second = run_landscape(tiny_config("scan.line.points=9", "scan=line"))
    assert second["reused_checkpoints"] is True and not first["reused_checkpoints"]
    assert (directory / "final.pt").stat().st_mtime_ns == stamp
    third = run_train(tiny_config("train.optimizer.lr=0.01"))
    assert Path(third["checkpoint_dir"]) != directory and third["reused_checkpoints"] is False


def test_same_seed_gives_the_same_numbers(tmp_path):
    overrides = ["train.epochs=1", "scan=line", "scan.line.points=5", "progress=false", "logger=none"]
    a = run_landscape(compose_config(tmp_path / "a", overrides))
    b = run_landscape(compose_config(tmp_path / "b", overrides))
    values_a = ScanResult.load(a["scans"]["line"]["file"]).values
    values_b = ScanResult.load(b["scans"]["line"]["file"]).values
    for key in values_a:
        np.testing.assert_array_equal(values_a[key], values_b[key])


def test_two_jobs_started_at_once_train_once(tmp_path):
    command = [sys.executable, "run.py", "task=train", "train.epochs=1", "logger=none", "progress=false",
               f"cache_dir={tmp_path / 'cache'}"]
    jobs = [subprocess.Popen([*command, f"hydra.run.dir={tmp_path / str(i)}"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert sum("reusing trained checkpoints" in out for out in outputs) == 1, outputs
    assert len(list((tmp_path / "cache").glob("*/final.pt"))) == 1


def test_wandb_offline_run_is_written_into_the_run_directory(tiny_config):
    cfg = tiny_config("logger=wandb", "logger.mode=offline", "scan=line")
    run_landscape(cfg)
    runs = list((Path(cfg.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    from losslandscape.tracking.wandb_records import finished_run_file

    assert finished_run_file(cfg.output_dir).stat().st_size > 1000


@pytest.mark.parametrize(
    "overrides",
    [
        ["dataset=moons", "model=mlp", "scan=line"],
        ["dataset=gaussian_mixture", "model=mlp", "scan=plane", "evaluation.splits=[test]"],
        ["model=cnn_bn", "scan=line", "evaluation.points_per_batch=4"],
        ["model=cnn_bn", "scan=line", "evaluation.bn_mode=recompute", "evaluation.bn_examples=256"],
        ["model=cnn_bn", "scan=ring", "scan.ring.angles=6", "evaluation.bn_mode=train", "evaluation.subset=100"],
        ["direction=sign_consistent", "direction.ratio=0.5", "scan=line"],
        ["direction=gradient", "scan=line"],
        ["direction=uniform", "scan=plane"],
        ["direction=rademacher", "scan=line", "direction.normalization=layer"],
        ["model=resnet20", "model.width=0.25", "train.epochs=1", "scan=line", "train.schedule=step"],
        ["model=vgg11_bn", "model.width=0.125", "train.epochs=1", "scan=line", "train.schedule=constant"],
    ],
)
def test_other_group_options_run_end_to_end(tiny_config, overrides):
    summary = run_landscape(tiny_config(*overrides))
    for scan in summary["scans"].values():
        assert all(np.isfinite(v) for v in scan["center"].values())


def test_every_option_of_the_scan_direction_logger_and_task_groups_composes_and_instantiates(tmp_path):
    for group in ["direction", "scan", "task", "logger", "evaluation", "train", "model", "dataset"]:
        options = sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
        assert options, group
        for option in options:
            cfg = compose_config(tmp_path, [f"{group}={option}"])
            assert cfg[group] is not None or option == "none"
    direction = instantiate(compose_config(tmp_path).direction)
    assert direction.describe()["normalization"] == "filter"


def test_unknown_option_names_the_choices(tmp_path):
    with pytest.raises(MissingConfigException) as error:
        compose_config(tmp_path, ["direction=filter_gausian"])
    assert "filter_gaussian" in str(error.value)


def test_bad_values_fail_before_training(tiny_config):
    cfg = tiny_config("scan.line.points=1")
    with pytest.raises(ValueError, match="scan.line.points=1: expected an integer >= 2"):
        run_landscape(cfg)
    assert not Path(cfg.cache_dir).exists()


def test_cli_help_lists_the_config_groups():
    result = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert ("task: asymmetric_valley, dashboard, figures, hessian, interpolation, landscape, mine, ntk, phase_plot, plot, report, "
            "shape_statistics, spawning, taxonomy, train") in result.stdout
    for line in ["dataset: cifar10, cifar100, digits, fashion_mnist, gaussian_mixture, hf_disk, image_folder, mnist, mnist1d, "
                 "moons, tensors, text", "logger: none, wandb", "mining: base, ring, template, vvv_basin, w_peak",
                 "model: cnn, cnn1d, cnn_bn, custom, hf, mlp, mlp_mnist1d, resnet20, vgg11_bn, vgg16_bn",
                 "loss: bce, cross_entropy, custom, mse, token_cross_entropy"]:
        assert line in result.stdout


def test_checkpoint_directions_and_interpolation_reach_the_other_models(tiny_config):
    summary = run_landscape(tiny_config("direction=towards_init", "scan=[line,interpolation]", "scan.line.span=[0,1]",
                                        "scan.interpolation.end=seed:1", "scan.interpolation.span=[0,1]",
                                        "scan.interpolation.points=3", "scan.line.points=5"))
    line = ScanResult.load(summary["scans"]["line"]["file"])
    init = model_from_checkpoint(Path(summary["checkpoint"]).with_name("init.pt"))
    data = instantiate(tiny_config().dataset)
    with torch.no_grad():
        init_loss = torch.nn.functional.cross_entropy(init(data.train_x), data.train_y).item()
    assert line.values["train_loss"][-1] == pytest.approx(init_loss, rel=1e-4)  # lambda = 1 is the initialization

    curve = ScanResult.load(summary["scans"]["interpolation"]["file"])
    assert curve.kind == "interpolation" and curve.provenance["scan"]["end"] == "seed:1"
    assert curve.values["train_loss"][0] == pytest.approx(line.values["train_loss"][0], rel=1e-6)  # t = 0 is final
    other = list(Path(summary["checkpoint"]).parents[1].glob("*-seed1-*/final.pt"))
    assert len(other) == 1  # seed 1 was trained through the cache, on the same split
    with torch.no_grad():
        other_loss = torch.nn.functional.cross_entropy(model_from_checkpoint(other[0])(data.train_x), data.train_y).item()
    assert curve.values["train_loss"][-1] == pytest.approx(other_loss, rel=1e-4)
    assert set(summary["scans"]["interpolation"]["shape"]) == {"train", "test"}


def test_intermediate_checkpoint_direction_centres_the_scan_on_it(tiny_config):
    summary = run_landscape(tiny_config("direction=between_checkpoints", "direction.start=epoch:1", "direction.end=final", "scan=line",
                                        "scan.line.span=[0,1]", "scan.line.points=3"))
    line = ScanResult.load(summary["scans"]["line"]["file"])
    data = instantiate(tiny_config().dataset)
    final = model_from_checkpoint(summary["checkpoint"])
    epoch1 = model_from_checkpoint(Path(summary["checkpoint"]).with_name("epoch_001.pt"))
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(m(data.train_x), data.train_y).item() for m in (epoch1, final)]
    assert line.values["train_loss"][[0, 2]].tolist() == pytest.approx(losses, rel=1e-4)


def test_trajectory_pca_plane_and_saved_directions_reused_from_file(tiny_config):
    cfg = tiny_config("direction=trajectory_pca", "scan=plane", "train.epochs=3")
    summary = run_landscape(cfg)
    assert any(f.endswith("plane_contour.png") for f in summary["scans"]["plane"]["figures"])
    files = sorted(str(p) for p in (Path(cfg.output_dir) / "directions").glob("direction*.pt"))
    again = run_landscape(tiny_config("direction=from_file", f"direction.paths=[{files[0]},{files[1]}]", "scan=plane", "train.epochs=3",
                                      "output_dir=" + str(Path(cfg.output_dir).parent / "again")))
    first = ScanResult.load(summary["scans"]["plane"]["file"]).values["train_loss"]
    second = ScanResult.load(again["scans"]["plane"]["file"]).values["train_loss"]
    np.testing.assert_allclose(second, first, rtol=1e-6)


def test_shape_statistics_task_labels_every_direction(tiny_config):
    summary = run_landscape_task(tiny_config("task=shape_statistics", "task.directions=4", "scan=line", "scan.line.points=21"))
    assert len(summary["labels"]) == 4
    assert sum(summary["fractions"].values()) == pytest.approx(1.0)
    out = Path(summary["figures"][0]).parents[1]
    assert len(list((out / "curves" / "shape_statistics").glob("direction*.npz"))) == 4


def run_landscape_task(cfg):
    from hydra.utils import get_method

    return get_method(cfg.task._target_)(cfg)


def test_a_line_scan_of_several_directions_draws_them_on_one_figure(tiny_config):
    summary = run_landscape(tiny_config("scan=line", "scan.line.curves=3"))
    assert sorted(summary["scans"]) == ["line0", "line1", "line2"]
    figures = {tuple(entry["figures"]) for entry in summary["scans"].values()}
    assert len(figures) == 1 and any(f.endswith("figures/line.png") for f in figures.pop())
    first, second = (ScanResult.load(summary["scans"][name]["file"]).values["train_loss"] for name in ("line0", "line1"))
    assert first[3] == pytest.approx(second[3]) and not np.allclose(first, second)  # same center, other directions


def test_wandb_run_records_curves_surfaces_summary_and_artifacts(tiny_config):
    from losslandscape.tracking.wandb_records import finished_run_file, logged_artifacts, logged_history, logged_summary

    cfg = tiny_config("logger=wandb", "logger.mode=offline", "logger.tags=[paper]")
    summary = run_landscape(cfg)
    record_file = finished_run_file(cfg.output_dir)
    logged = {key for row in logged_history(record_file) for key in row}
    for key in ["train/loss_step", "test/accuracy", "line/figure/_type", "line/table/_type",
                "line/plot_train_loss_table/_type", "plane/contour/_type", "plane/surface/_type", "plane/table/_type"]:
        assert key in logged, key
    values = logged_summary(record_file)
    assert values["scans/line/shape/train/label"] == summary["scans"]["line"]["shape"]["train"]["label"]
    assert values["scans/plane/center/train_loss"] == pytest.approx(summary["scans"]["plane"]["center"]["train_loss"])
    assert values["train_accuracy"] == pytest.approx(summary["train_accuracy"])
    kinds = {kind for _, kind in logged_artifacts(record_file)}
    assert {"checkpoint", "direction", "run_table"} <= kinds


def test_a_corrupt_wandb_file_is_refused(tmp_path):
    from losslandscape.tracking.wandb_records import read_records

    (tmp_path / "x.wandb").write_bytes(b"not wandb")
    with pytest.raises(ValueError, match="header is missing"):
        read_records(tmp_path / "x.wandb")
