"""Every setting checked before any work: exit code 2, one line naming the key and the value, no traceback,
nothing trained or scanned. Most mistakes run in-process through the task entry point (as run.py calls it);
a few run `python run.py` end to end."""

from __future__ import annotations

import re

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import get_method

from conftest import TINY, compose_config
from losslandscape.directions.store import save_direction
from losslandscape.errors import ConfigError, StorageError, UserError
from losslandscape.files import save_torch
from losslandscape.models.cnn import SmallCNN
from losslandscape.models.mlp import MLP
from losslandscape.training.checkpoints import save_checkpoint
from losslandscape.validation import check_command_line, exit_on_user_error, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# (overrides, key and value the message must name); {tmp} is the test's folder, {cnn} a SmallCNN checkpoint
# of the digits, {random} a file of random bytes, {mlp_direction} a direction of an MLP.
MISTAKES = [
    # the cases of issue 18
    (["scan.line.points=5.5"], "scan.line.points", "5.5"),
    (["evaluation.batch_size=0"], "evaluation.batch_size", "0"),
    (["evaluation.subset=-5"], "evaluation.subset", "-5"),
    (["task=hessian", "hessian.eigen.top_k=-3"], "hessian.eigen.top_k", "-3"),
    (["train.epochs=0"], "train.epochs", "0"),
    (["train.epochs=-1"], "train.epochs", "-1"),
    (["checkpoint={tmp}/missing.pt"], "checkpoint", "{tmp}/missing.pt"),
    (["direction=from_file", "direction.paths=[{tmp}/missing.pt]"], "direction.paths", "{tmp}/missing.pt"),
    (["direction=between_checkpoints", "direction.start=epoch:99"], "direction.start", "epoch:99"),
    (["task=hessian", "hessian.eigen.top_k=100000", "hessian.eigen.max_steps=100000"], "hessian.eigen.top_k", "100000"),
    (["scan.line.span=-1"], "scan.line.span", "-1"),
    (["evaluation.subset=0"], "evaluation.subset", "0"),
    (["checkpoint={random}"], "checkpoint", "{random}"),
    (["seed=abc"], "seed", "abc"),
    (["evaluation.workers=0"], "evaluation.workers", "0"),
    (["evaluation.splits=[val]"], "evaluation.splits", "val"),
    (["evaluation.bn_mode=foo"], "evaluation.bn_mode", "foo"),
    (["task=mine", "mining.runs=0"], "mining.runs", "0"),
    (["train.optimizer.lr=-1"], "train.optimizer.lr", "-1"),
    (["train.schedule=foo"], "train.schedule", "foo"),
    (["model=mlp", "checkpoint={cnn}"], "checkpoint", "{cnn}"),  # a checkpoint of another architecture
    (["device=cuda:999"], "device", "cuda:999"),
    # at least one per group
    (["dataset=moons", "dataset.test_fraction=1.5"], "dataset.test_fraction", "1.5"),
    (["dataset.train_size=0"], "dataset.train_size", "0"),
    (["dataset=mnist", "dataset.root={tmp}/no_data"], "dataset.root", "{tmp}/no_data"),
    (["model=vgg11_bn", "model.depth=12"], "model.depth", "12"),
    (["model=mlp", "model.activation=foo"], "model.activation", "foo"),
    (["model._target_=nowhere.Model"], "model._target_", "nowhere.Model"),
    (["dataset=moons", "model=cnn"], "model._target_", "losslandscape.models.cnn.SmallCNN"),  # images only
    (["train.batch_size=0"], "train.batch_size", "0"),
    (["train.checkpoint_every=0"], "train.checkpoint_every", "0"),
    (["train.spawn_epoch=50", "train.spawn_data_seed=1"], "train.spawn_epoch", "50"),
    (["direction=between_checkpoints", "direction.start=epoch:1", "train.epochs=4", "train.checkpoint_every=2"],
     "direction.start", "epoch:1"),
    (["direction.normalization=foo"], "direction.normalization", "foo"),
    (["direction=sign_consistent", "direction.ratio=2"], "direction.ratio", "2"),
    (["direction=from_file", "direction.paths=[{mlp_direction}]"], "direction.paths[0]", "{mlp_direction}"),
    (["scan.plane.x_points=1"], "scan.plane.x_points", "1"),
    (["scan.plane.y_span=[1,-1]"], "scan.plane.y_span", "[1,-1]"),
    (["scan=ring", "scan.ring.angles=2"], "scan.ring.angles", "2"),
    (["scan=interpolation", "scan.interpolation.end=epoch:5"], "scan.interpolation.end", "epoch:5"),
    (["evaluation.points_per_batch=0"], "evaluation.points_per_batch", "0"),
    (["task=hessian", "hessian.dtype=float16"], "hessian.dtype", "float16"),
    (["task=hessian", "hessian.eigen.method=foo"], "hessian.eigen.method", "foo"),
    (["task=hessian", "hessian.density.runs=-1"], "hessian.density.runs", "-1"),
    (["task=mine", "mining.split=val"], "mining.split", "val"),
    (["task=mine", "mining.miner.steps=0"], "mining.miner.steps", "0"),
    (["logger=wandb", "logger.mode=foo"], "logger.mode", "foo"),
    (["task=ntk", "task.examples=0"], "task.examples", "0"),
    (["task=interpolation", "task.points=1"], "task.points", "1"),
    (["task=interpolation", "task.pairs=[[same,final,final]]"], "task.pairs", "[same,final,final]"),
    (["task=taxonomy", "task.models=1"], "task.models", "1"),
    (["task=spawning", "task.spawn_epochs=[30]"], "task.spawn_epochs", "30"),
    (["task=shape_statistics", "task.directions=0"], "task.directions", "0"),
    (["task=asymmetric_valley", "task.ratios=[2.0]"], "task.ratios", "2.0"),
    (["checkpoint=epoch:3"], "checkpoint", "epoch:3"),
    (["resume=maybe"], "resume", "maybe"),
    (["progress=2"], "progress", "2"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The files some mistakes point at: a digits SmallCNN checkpoint, random bytes, an MLP's direction."""
    folder = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    cnn = SmallCNN((1, 8, 8), 10, channels=(16, 32), hidden=64)
    cnn_cfg = {"_target_": "losslandscape.models.cnn.SmallCNN", "channels": [16, 32], "batch_norm": False, "hidden": 64}
    save_checkpoint(folder / "cnn.pt", cnn, {"model": cnn_cfg, "dataset": {"_target_": "digits"}, "input_shape": [1, 8, 8],
                                             "num_classes": 10, "epoch": 2})
    (folder / "random.bin").write_bytes(bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)).tolist()))
    mlp = MLP((1, 8, 8), 10, hidden=[8])
    direction = save_direction(folder, "mlp", {n: torch.zeros_like(p) for n, p in mlp.named_parameters()}, {})
    return {"cnn": str(folder / "cnn.pt"), "random": str(folder / "random.bin"), "mlp_direction": str(direction)}


def tiny(tmp_path: Path, overrides: list[str]):
    """The tiny default job with ``overrides``; scan settings of scans that are not chosen are left out."""
    chosen = next((o.split("=", 1)[1] for o in overrides if o.startswith("scan=")), "line,plane")
    base = [o for o in TINY if not o.startswith("scan.") or o.split(".")[1] in chosen]
    return compose_config(tmp_path, [*base, *overrides])


def run_entry(cfg, capsys) -> tuple[int, str]:
    """The task entry point as run.py calls it: the exit code and what went to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(lambda: get_method(cfg.task._target_)(cfg))
    return exit_info.value.code, capsys.readouterr().err


def written(tmp_path: Path) -> list[Path]:
    """Checkpoints and results: none may exist after a mistake."""
    return [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".npz", ".json", ".png")]


@pytest.mark.parametrize("overrides, key, value", MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_mistake_ends_the_job_with_one_line_and_exit_code_2(overrides, key, value, files, tmp_path, capsys):
    fill = {"tmp": str(tmp_path), **files}
    cfg = tiny(tmp_path, [o.format(**fill) for o in overrides])
    code, err = run_entry(cfg, capsys)
    lines = err.strip().splitlines()
    assert code == 2
    assert "Traceback" not in err
    assert lines and all(line.startswith("error: ") for line in lines), err
    problem = next((line for line in lines if key in line), "")
    assert value.format(**fill) in problem, err  # the same line names the key and the value
    assert "weights_only=False" not in err  # torch's advice to load unsafely never reaches the user
    assert written(tmp_path) == []


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        validate_config(tiny(tmp_path, ["train.epochs=0", "evaluation.batch_size=0", "scan.line.span=[1,0]"]))
    assert error.value.problems == [
        "train.epochs=0: expected an integer >= 1",
        "scan.line.span=[1,0]: expected [low, high] with low < high, e.g. [-1.0, 1.0]",
        "evaluation.batch_size=0: expected auto or an integer >= 1",
    ]


def test_epoch_references_name_the_epochs_training_saves(tmp_path):
    cfg = tiny(tmp_path, ["direction=towards_init", "direction.end=epoch:3", "train.epochs=7", "train.checkpoint_every=2"])
    with pytest.raises(ConfigError, match=r"direction.end=epoch:3: training saves epochs 2, 4, 6, 7 \(train.epochs=7, "
                                          r"train.checkpoint_every=2\)"):
        validate_config(cfg)
    validate_config(tiny(tmp_path, ["direction=towards_init", "direction.end=epoch:7", "train.epochs=7", "train.checkpoint_every=2"]))


CONFIGS = [["task=" + p.stem] for p in sorted((CONF / "task").glob("*.yaml"))] + [
    ["experiment=" + p.stem] for p in sorted((CONF / "experiment").glob("*.yaml"))] + [
    ["dataset=" + p.stem] for p in sorted((CONF / "dataset").glob("*.yaml")) if p.stem not in ("mnist", "fashion_mnist", "cifar10", "cifar100")] + [
    ["model=" + p.stem] for p in sorted((CONF / "model").glob("*.yaml"))] + [
    ["direction=" + p.stem, "direction.paths=[" + str(CONF / "config.yaml") + "]"] for p in sorted((CONF / "direction").glob("*.yaml"))] + [
    ["mining=" + p.stem] for p in sorted((CONF / "mining").glob("*.yaml")) if p.stem != "base"] + [
    ["scan=[line,plane,ring,interpolation]"], ["logger=wandb"]]


# options that need the user's own value (a file, a class): as shipped they name the key to give
NEEDS_A_VALUE = {"dataset=hf_disk": "dataset.path", "dataset=image_folder": "dataset.root", "dataset=tensors": "dataset.path",
                 "dataset=text": "dataset.path", "model=custom": "model._target_", "loss=custom": "loss.fn"}
CONFIGS += [["loss=" + p.stem] for p in sorted((CONF / "loss").glob("*.yaml"))]


@pytest.mark.parametrize("overrides", CONFIGS, ids=[" ".join(c) for c in CONFIGS])
def test_every_shipped_option_passes(overrides, tmp_path):
    """No false alarms: every option of conf/ as shipped is valid (the validation would else block real jobs)."""
    if overrides[0].startswith("direction=") and "from_file" not in overrides[0]:
        overrides = overrides[:1]
    if overrides[0] in NEEDS_A_VALUE:
        key = NEEDS_A_VALUE[overrides[0]]
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=\?\?\?: required, give it on the command line"):
            validate_config(compose_config(tmp_path, overrides))
        return
    validate_config(compose_config(tmp_path, overrides))


def test_a_typo_suggests_the_closest_key_every_one_at_once():
    with pytest.raises(ConfigError) as error:
        check_command_line(str(CONF), "config", ["train.epoch=5", "scan.line.pionts=3", "datset=moons", "model=mlp"])
    assert error.value.problems == [
        "train.epoch=5: no such key; did you mean train.epochs? (to add a new key: +train.epoch=5)",
        "scan.line.pionts=3: no such key; did you mean scan.line.points? (to add a new key: +scan.line.pionts=3)",
        "datset=moons: no such key; did you mean dataset? (to add a new key: +datset=moons)",
    ]


def test_an_unknown_option_lists_the_options_and_sweeps_are_checked_by_key():
    with pytest.raises(ConfigError, match=r"^model=mlpp: no such option; choose one of cnn, cnn1d, cnn_bn, custom, hf, mlp, "
                                          r"mlp_mnist1d, resnet20, vgg11_bn, vgg16_bn \(did you mean model=mlp\?\)$"):
        check_command_line(str(CONF), "config", ["model=mlpp"])
    with pytest.raises(ConfigError, match=r"^train.epoch=1,2: no such key; did you mean train.epochs\?"):
        check_command_line(str(CONF), "config", ["-m", "train.epoch=1,2"])
    check_command_line(str(CONF), "config", ["-m", "dataset=moons,digits", "train.epochs=1,2", "+extra=1", "hydra.job.chdir=false"])
    # the README's gallery command: a sweep over a group whose default is null (experiment: null)
    check_command_line(str(CONF), "config", ["-m", "experiment=glob(fig_*)", "logger=none"])
    check_command_line(str(CONF), "config", ["-m", "experiment=fig_v_basin,fig_w_basin"])


def test_a_bug_keeps_its_traceback_and_a_wrapped_user_error_does_not(capsys):
    with pytest.raises(ZeroDivisionError):
        exit_on_user_error(lambda: 1 / 0)

    def wrapped():
        try:
            raise UserError("dataset.root=/x: no such folder")
        except UserError as error:
            raise RuntimeError("Error in call to target 'load'") from error  # as hydra's instantiate wraps it

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(wrapped)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: dataset.root=/x: no such folder\n"


def test_hydra_full_error_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        exit_on_user_error(lambda: check_command_line(str(CONF), "config", ["train.epoch=5"]))


# ----- storage --------------------------------------------------------------------------------------------------

def test_a_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    """A real ENOSPC: the temporary file is a link to /dev/full, which refuses every byte."""
    import losslandscape.files as files

    target = tmp_path / "final.pt"
    save_torch(target, {"weights": torch.arange(3.0)})
    real_mkstemp = files.tempfile.mkstemp

    def mkstemp_on_full_device(**kwargs):
        fd, name = real_mkstemp(**kwargs)
        os.close(fd)
        os.remove(name)
        os.symlink("/dev/full", name)
        return os.open("/dev/null", os.O_RDONLY), name

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp_on_full_device)
    with pytest.raises(StorageError) as error:
        save_torch(target, {"weights": torch.zeros(1000)})
    message = str(error.value)
    assert f"cannot write {target}: no space left on the device" in message
    assert "final.pt keeps its previous content" in message
    torch.testing.assert_close(torch.load(target, weights_only=True)["weights"], torch.arange(3.0), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt"]  # no temporary file left


def test_a_folder_without_permission_is_named(tmp_path, monkeypatch):
    import losslandscape.files as files

    def refused(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs["dir"])

    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / 'summary.json'}: permission denied .* no partial "
                                           "summary.json was left behind"):
        files.write_json(tmp_path / "summary.json", {"a": 1})


# ----- W&B --------------------------------------------------------------------------------------------------------

def test_an_unreachable_wandb_server_falls_back_offline_with_one_run_folder(tmp_path, monkeypatch, capsys):
    from losslandscape.tracking.wandb_tracker import WandbTracker

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port on this machine: nothing listens
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker = WandbTracker(output_dir=tmp_path, run_config={"seed": 0}, mode="auto")
    tracker.finish()
    assert "W&B: cannot reach http://127.0.0.1:9, logging offline" in capsys.readouterr().out
    assert tracker.run.settings.mode == "offline"
    assert [p.name.startswith("offline-run-") for p in (tmp_path / "wandb").glob("*run-*")] == [True]


# ----- end to end: `python run.py` ----------------------------------------------------------------------------------

def run_py(tmp_path: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "run.py"), f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
               f"hydra.run.dir={tmp_path / 'hydra'}", *TINY, *overrides]
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    environment.pop("HYDRA_FULL_ERROR", None) if not env or "HYDRA_FULL_ERROR" not in env else None
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("overrides, expected", [
    (["train.epoch=5"], "error: train.epoch=5: no such key; did you mean train.epochs? (to add a new key: +train.epoch=5)\n"),
    (["train.epochs=-1", "evaluation.subset=0"],
     "error: train.epochs=-1: expected an integer >= 1\nerror: evaluation.subset=0: expected an integer >= 1 or null\n"),
], ids=["typo", "two settings"])
def test_run_py_exits_2_with_the_lines_only(overrides, expected, tmp_path):
    result = run_py(tmp_path, *overrides)
    assert (result.returncode, result.stderr) == (2, expected)
    assert written(tmp_path / "run") == [] and not (tmp_path / "cache").exists()


def test_run_py_reports_a_checkpoint_found_unreadable_after_loading_the_data(files, tmp_path):
    result = run_py(tmp_path, f"checkpoint={files['random']}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: checkpoint={files['random']}: cannot read checkpoint {files['random']} (")
    assert written(tmp_path / "run") == [] and not list((tmp_path / "cache").rglob("*.pt"))


def test_run_py_with_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_py(tmp_path, "train.epochs=0", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConfigError: train.epochs=0: expected an integer >= 1" in result.stderr
