"""What every task does first: device, data, tracker, trained checkpoints."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..directions.context import DirectionContext
from ..errors import ConfigError
from ..files import package_versions, stable_hash, write_json
from ..landscape.batches import Residency
from ..landscape.evaluator import Evaluator, ParamDict, parameters_of
from ..landscape.point_workers import resolve_workers
from ..losses import Loss, LossError, as_loss
from ..models.building import build_model, output_size
from ..sweeps import DeviceLease, finished_summary, lease_device
from ..training.cache import TrainedRun, train_or_reuse
from ..training.checkpoints import load_into_configured_model
from ..tracking.wandb_tracker import NullTracker, sweep_group
from ..validation import check_with_data, validate_config

log = logging.getLogger(__name__)


@dataclass
class Session:
    """The resolved pieces a task works with."""

    cfg: DictConfig
    output_dir: Path
    device: torch.device
    data: DataSplits
    tracker: Any
    lease: DeviceLease
    loss: Loss = field(default_factory=as_loss)

    @property
    def is_main(self) -> bool:
        """Rank 0 of a distributed job (or the only process): it alone writes summaries, figures and W&B."""
        return distributed_rank() == 0

    def provenance(self, **extra: Any) -> dict[str, Any]:
        return {"config": OmegaConf.to_container(self.cfg, resolve=True), "versions": package_versions(), **extra}


def open_session(cfg: DictConfig) -> Session:
    """Load the data, take a device and start the tracker, in that order (cheap checks first).

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), the job joins a process group: every rank takes
    ``cuda:LOCAL_RANK`` (or the CPU), all write into rank 0's output directory, scans are sharded
    over the ranks (:mod:`losslandscape.landscape.sharded`) and only rank 0 reports.
    """
    output_dir = Path(to_absolute_path(str(cfg.output_dir)))
    lease = join_process_group() or lease_device(str(cfg.device), Path(to_absolute_path(str(cfg.cache_dir))) / "gpu-pool")
    try:
        resolve_workers(cfg.evaluation.workers, lease.device)  # a bad setting fails here, before data and training
    except ValueError:
        lease.release()
        raise
    output_dir = shared_output_dir(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg.cache_dir = to_absolute_path(str(cfg.cache_dir))
    torch.manual_seed(int(cfg.seed))
    try:
        data = instantiate(cfg.dataset)
        loss = as_loss(instantiate(cfg.loss) if cfg.get("loss") is not None else None)
        check_with_data(cfg, data, loss)  # the model fits the data and the loss, checkpoint= fits the model: before training
    except BaseException:
        lease.release()
        raise
    if distributed_rank() != 0 or cfg.logger is None or cfg.logger.get("_target_") is None:
        tracker = NullTracker()
    else:
        config = OmegaConf.to_container(cfg, resolve=True)
        tracker = instantiate(cfg.logger, _partial_=True)(output_dir=str(output_dir), run_config=config, **hydra_job())
    return Session(cfg, output_dir, lease.device, data, tracker, lease, loss)


def require_accuracy(session: Session, task: str) -> None:
    """Tasks that report classification error need a loss whose metric is an accuracy."""
    if session.loss.metric != "accuracy":
        raise LossError(f"task={task} measures classification error (1 - accuracy), but the {session.loss.name} "
                        f"has metric {session.loss.metric}; use loss=cross_entropy, bce or token_cross_entropy")


def configured_model(cfg: DictConfig, data: DataSplits) -> torch.nn.Module:
    """The configured architecture for this data, freshly initialized."""
    return build_model(cfg.model, data.input_shape, output_size(data))


def distributed_rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def join_process_group() -> DeviceLease | None:
    """Under ``torchrun`` with several processes: init the process group and take this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    cuda = torch.cuda.is_available()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    return DeviceLease(device)


def shared_output_dir(output_dir: Path) -> Path:
    """Rank 0's output directory on every rank (each rank's Hydra may have stamped its own time)."""
    if not torch.distributed.is_initialized():
        return output_dir
    shared = [str(output_dir)]
    torch.distributed.broadcast_object_list(shared, src=0)
    return Path(shared[0])


def hydra_job() -> dict[str, Any]:
    """The job's command-line overrides and, in a multirun, its sweep: W&B names, tags and groups runs by them."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    sweep = sweep_group(hydra.sweep.dir) if hydra.mode == RunMode.MULTIRUN else None
    return {"overrides": list(hydra.overrides.task), "sweep": sweep}


def trained_checkpoints(session: Session) -> TrainedRun:
    """Cached checkpoints for this config (training them if needed), with their curves in the tracker."""
    run = train_or_reuse(
        session.cfg, session.data, session.device, session.tracker.lightning_logger(), bool(session.cfg.progress)
    )
    if run.reused:
        session.tracker.log_history(run.history)
    session.tracker.log_files(f"checkpoint-{run.key}", "checkpoint", [run.final], {"train_key": run.key, "directory": str(run.directory)})
    return run


def summary_head(session: Session, task: str) -> dict[str, Any]:
    """The keys every task's summary starts with: which task ran, on which data and model."""
    return {"task": task, "dataset": session.data.name, "model": session.cfg.model._target_}


def run_task(cfg: DictConfig, body) -> dict[str, Any]:
    """Open the session, run ``body``, write ``summary.json`` and close the tracker with the right exit code.

    A job that already finished in its output directory with the same config is skipped, so a
    restarted sweep only runs what is missing (``resume=false`` runs it again).
    """
    validate_config(cfg)  # every setting, all problems at once, before the session loads data or trains
    config_hash = stable_hash(OmegaConf.to_container(cfg, resolve=True))
    if cfg.resume and (done := finished_summary(to_absolute_path(str(cfg.output_dir)), config_hash)):
        print(f"== {done['task']}: already finished in {cfg.output_dir}, skipped (resume=false runs it again)")
        return done
    session = open_session(cfg)
    try:
        summary = {**body(session), "config_hash": config_hash}
        if cfg.get("gallery") is not None:  # a figure recipe: the figures task collects its panels
            summary["gallery"] = OmegaConf.to_container(cfg.gallery, resolve=True)
        if not session.is_main:
            return summary
        write_json(session.output_dir / "summary.json", summary)
        session.tracker.log_summary(summary)
    except BaseException:
        session.tracker.finish(exit_code=1)
        raise
    finally:
        session.lease.release()
    session.tracker.finish(exit_code=0)
    print_summary(summary, session.output_dir)
    return summary


def print_summary(summary: dict[str, Any], output_dir: Path) -> None:
    """A few lines a person reads at the end of a run: accuracy, loss at the center, where the files are."""
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.2f} %"

    model = summary.get("model", "").rsplit(".", 1)[-1]
    lines = [f"== {summary['task']}" + (f": {model} on {summary['dataset']}" if summary.get("dataset") else "")]
    reused = " (reused cached checkpoints)" if summary.get("reused_checkpoints") else ""
    for metric in ("accuracy", "r2", "perplexity", "loss"):
        measured = {split: summary[f"{split}_{metric}"] for split in ("train", "test") if f"{split}_{metric}" in summary}
        if measured:
            shown = ", ".join(f"{split} {percent(v) if metric == 'accuracy' else f'{v:.4g}'}" for split, v in measured.items())
            lines.append(f"   {metric}: {shown}{reused}")
            reused = ""
    if "fractions" in summary:
        shares = ", ".join(f"{label} {100 * share:.0f} %" for label, share in summary["fractions"].items() if share > 0)
        lines.append(f"   shapes of {summary['directions']} curves ({summary['split']} loss): {shares}")
    if "hessian" in summary:
        h = summary["hessian"]
        top = ", ".join(f"{v:.4g}" for v in h.get("top_eigenvalues", []))
        lines.append(f"   Hessian ({h['parameters']} parameters, {h['num_products']} products): top eigenvalues {top}")
        if "trace" in h:
            lines.append(f"   trace {h['trace']:.4g} +- {h['trace_standard_error']:.2g}; bottom eigenvalues {h.get('bottom_eigenvalues', [])}")
        if "lens" in h:
            lines.append(f"   random directions curving up: {100 * h['lens']['positive_fraction']:.0f} %")
    lines += [f"   {line}" for line in summary.get("headline", [])]
    for name, scan in summary.get("scans", {}).items():
        center = ", ".join(f"{k.replace('_loss', '')} {v:.4f}" for k, v in scan["center"].items() if k.endswith("_loss"))
        shapes = ", ".join(f"{split} {shape['label']}" for split, shape in scan.get("shape", {}).items())
        lines.append(f"   {name}: loss at the center {center}" + (f"; shape {shapes}" if shapes else ""))
    lines.append(f"   results: {output_dir} (summary.json, curves/, surfaces/, figures/)")
    print("\n".join(lines))


@dataclass
class Checkpoints:
    """Resolves checkpoint references (``init``, ``final``, ``epoch:N``, ``seed:S``, ``init_seed:S``,
    ``data_seed:S``, ``spawn:E:S``, a path) to parameters.

    ``seed:S`` is this config trained with seed S on the same data split, through the cache. The
    config's own training runs only when a reference needs it: a task given ``checkpoint=FILE``
    measures that file without training anything.
    """

    session: Session
    trained: TrainedRun | None = None
    _loaded: dict[str, ParamDict] = field(default_factory=dict)

    @property
    def run(self) -> TrainedRun:
        """This config's trained checkpoints (trained now if the cache has none)."""
        if self.trained is None:
            self.trained = trained_checkpoints(self.session)
        return self.trained

    @property
    def train_key(self) -> str | None:
        """The training cache key, when this config's training was used."""
        return None if self.trained is None else self.trained.key

    def path(self, ref: str) -> Path:
        if ref == "init":
            return self.run.init
        if ref == "final":
            return self.run.final
        if match := re.fullmatch(r"epoch:(\d+)", ref):
            path = self.run.directory / f"epoch_{int(match[1]):03d}.pt"
            if not path.is_file():
                saved = ", ".join(f"epoch:{int(p.stem[6:])}" for p in self.run.epochs())
                raise ConfigError(f"no checkpoint {ref} in {self.run.directory}; saved: {saved}")
            return path
        if match := re.fullmatch(r"seed:(\d+)", ref):
            return self._other_seed(int(match[1])).final
        if re.fullmatch(r"(init_seed|data_seed):\d+|spawn:\d+:\d+", ref):  # variants of this config's training
            from .model_refs import ModelRefs

            return ModelRefs(self.session, self).resolve(ref).checkpoint
        path = Path(to_absolute_path(ref))
        if not path.is_file():
            raise ConfigError(f"checkpoint reference {ref!r} is neither init, final, epoch:N, seed:S, init_seed:S, data_seed:S, "
                             "spawn:E:S nor an existing file")
        return path

    def params(self, ref: str) -> ParamDict:
        if ref not in self._loaded:
            self._loaded[ref] = parameters_of(self.model(ref))
        return self._loaded[ref]

    def model(self, ref: str) -> torch.nn.Module:
        """The configured model with the weights of ``ref`` (any supported file format)."""
        return load_model(self.session, self.path(ref))

    def trajectory(self) -> list[ParamDict]:
        """The saved training path in order: ``trajectory=GLOB`` (the user's own files, ordered by the
        last number in each name) or this config's ``init`` and epoch checkpoints."""
        if self.session.cfg.get("trajectory"):
            return [parameters_of(load_model(self.session, path)) for path in trajectory_files(str(self.session.cfg.trajectory))]
        return [self.params(ref) for ref in ["init", *(f"epoch:{int(p.stem[6:])}" for p in self.run.epochs())]]

    def _other_seed(self, seed: int) -> TrainedRun:
        cfg = self.session.cfg
        fixed_data = OmegaConf.to_container(cfg.dataset, resolve=True)  # keep this run's split
        other = OmegaConf.merge(cfg, {"seed": seed, "dataset": fixed_data})
        return train_or_reuse(other, self.session.data, self.session.device, None, bool(cfg.progress))


def evaluators_for(session: Session, model: torch.nn.Module) -> dict[str, Evaluator]:
    """One evaluator per configured split, on a seeded subset of each split if ``evaluation.subset`` is set."""
    evaluation, data = session.cfg.evaluation, session.data
    generator = torch.Generator().manual_seed(int(session.cfg.seed))
    bn_x = data.train_x[torch.randperm(len(data.train_x), generator=generator)[: int(evaluation.bn_examples)]]
    evaluators = {}
    for split in evaluation.splits:
        x, y = data.split(split)
        if evaluation.subset is not None and int(evaluation.subset) < len(y):
            keep = torch.randperm(len(y), generator=generator)[: int(evaluation.subset)]
            x, y = x[keep], y[keep]
        evaluators[split] = Evaluator(model, x, y, evaluation.batch_size, evaluation.bn_mode, bn_x, evaluation.first_layer_mb,
                                      evaluation.workers, session.loss, Residency.from_config(evaluation))
    return evaluators


def direction_context(session: Session, checkpoints: Checkpoints, theta: ParamDict, train_loss) -> DirectionContext:
    return DirectionContext(theta, int(session.cfg.seed), checkpoints.params, checkpoints.trajectory, train_loss)


def scanned_model(session: Session, checkpoints: Checkpoints) -> tuple[torch.nn.Module, ParamDict, Path]:
    """The model every scan is centred on: ``checkpoint=...`` if given (nothing is trained for it),
    else the cached final one."""
    cfg = session.cfg
    path = checkpoints.path(str(cfg.checkpoint)) if cfg.checkpoint else checkpoints.run.final
    model = load_model(session, path)
    return model, parameters_of(model), path


def load_model(session: Session, path: Path) -> torch.nn.Module:
    """The configured model on the session's device with the weights in ``path`` (any supported format)."""
    cfg, data = session.cfg, session.data
    return load_into_configured_model(path, cfg.model, data.input_shape, output_size(data), session.device,
                                      cfg.get("checkpoint_prefix"))


def trajectory_files(pattern: str) -> list[Path]:
    """Checkpoint files matching ``pattern`` (a glob, or a folder: all its files), ordered by the last
    number in each file name (``epoch_2.pt`` before ``epoch_10.pt``)."""
    import glob

    folder = Path(to_absolute_path(pattern))
    paths = sorted(folder.iterdir()) if folder.is_dir() else [Path(p) for p in glob.glob(to_absolute_path(pattern))]
    paths = [p for p in paths if p.is_file() or (p / "config.json").is_file()]
    if not paths:
        raise ValueError(f"trajectory={pattern!r} matches no checkpoint files: give a folder or a glob such as 'run/epoch_*.pt'")

    def order(path: Path) -> tuple[int, str]:
        numbers = re.findall(r"\d+", path.stem)
        return (int(numbers[-1]) if numbers else -1, path.name)

    return sorted(paths, key=order)


def measured_at(evaluators: dict[str, Evaluator], theta: ParamDict, loss: Loss) -> dict[str, float]:
    """Headline numbers of the measured model itself: ``{split}_loss`` and ``{split}_{metric}`` on the
    evaluated splits (and the loss's extras, e.g. perplexity), so a summary never shows another model's numbers."""
    numbers = {}
    with torch.inference_mode():
        for split, evaluator in evaluators.items():
            values = dict(zip(evaluator.metric_names, evaluator.metrics(theta).tolist()))
            numbers.update({f"{split}_{name}": value for name, value in values.items()})
            numbers.update({f"{split}_{name}": value for name, value in loss.summary(values).items()})
    return numbers
