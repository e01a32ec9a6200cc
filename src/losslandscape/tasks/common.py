"""What every task does first: device, data, tracker, trained checkpoints."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..files import package_versions
from ..store import result_key, save_record
from ..landscape.batches import Residency
from ..landscape.evaluator import Evaluator, ParamDict, as_dtype
from ..landscape.point_workers import resolve_workers
from ..losses import Loss, LossError, as_loss
from ..models.building import build_model, output_size
from ..errors import ConfigError
from ..jobs import config_hash, finished_summary, held, resume_directory
from ..sweeps import DeviceLease, lease_device
from ..training.cache import TrainedRun, model_definition, train_or_reuse
from ..training.checkpoints import load_into_configured_model
from ..tracking.wandb_tracker import NullTracker, sweep_group
from ..validation import check_with_data, validate_config

log = logging.getLogger(__name__)


# evaluation settings that choose an engine, not the numbers (DESIGN.md: engines give the plain definition's numbers)
ENGINE_KEYS = ("workers", "points_per_batch", "first_layer_mb")


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

    def result_key(self, measure: str, **parts: Any) -> str:
        """The result store's key of a result of this session's objective: the data by content, the loss,
        the evaluation settings that change numbers, the seed that draws subsets and BatchNorm examples,
        the device kind, and the measure's own ``parts`` (its settings, the weights by content)."""
        evaluation = {k: v for k, v in OmegaConf.to_container(self.cfg.evaluation, resolve=True).items() if k not in ENGINE_KEYS}
        return result_key({"measure": measure, "data": self.data.content_hash, "loss": self.loss.describe(), "evaluation": evaluation,
                           "seed": int(self.cfg.seed), "device": self.device.type, **parts})


def open_session(cfg: DictConfig, output_dir: Path | None = None) -> Session:
    """Take a device and load the data, in that order (cheap checks first); the tracker starts later
    (:func:`start_tracker`), once the job is known to run.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), the job joins a process group: every rank takes
    ``cuda:LOCAL_RANK`` (or the CPU), all write into rank 0's output directory, scans are sharded
    over the ranks (:mod:`losslandscape.landscape.sharded`) and only rank 0 reports.
    """
    output_dir = output_dir or Path(to_absolute_path(str(cfg.output_dir)))
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
    return Session(cfg, output_dir, lease.device, data, NullTracker(), lease, loss)


def start_tracker(session: Session) -> None:
    """W&B (or the configured logger) for this job, on rank 0 only."""
    cfg = session.cfg
    if distributed_rank() != 0 or cfg.logger is None or cfg.logger.get("_target_") is None:
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    session.tracker = instantiate(cfg.logger, _partial_=True)(output_dir=str(session.output_dir), run_config=config, **hydra_job())


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

    Rerunning a command continues its killed run in that run's directory (:mod:`losslandscape.jobs`),
    whose finished results the result store reuses; a job that already finished there with the same
    config and data is skipped, so a restarted sweep only runs what is missing (``resume=false`` runs
    it again). The directory is held by this process while it runs.
    """
    validate_config(cfg)  # every setting, all problems at once, before the session loads data or trains
    refuse_unsharded(cfg)
    job_hash = config_hash(cfg)
    session = open_session(cfg, resume_directory(cfg, job_hash, Path(to_absolute_path(str(cfg.output_dir)))))
    # a finished job is reused for the same config on the same data with the same model code
    key = result_key({"job": job_hash, "data": session.data.content_hash, "model": model_definition(cfg, session.data)})
    try:
        with held(session.output_dir, job_hash) if session.is_main else contextlib.nullcontext():
            if cfg.resume and (done := finished_summary(session.output_dir, key)):
                print(f"== {done['task']}: already finished in {session.output_dir}, skipped (resume=false runs it again)")
                return done
            start_tracker(session)
            summary = run_body(session, body, job_hash, key)
    finally:
        session.lease.release()
    if session.is_main:
        print_summary(summary, session.output_dir)
    return summary


def run_body(session: Session, body, job_hash: str, key: str) -> dict[str, Any]:
    """``body``'s summary, saved (rank 0) under the job's key; the tracker closed with the job's exit code."""
    try:
        summary = {**body(session), "config_hash": job_hash}
        if session.cfg.get("gallery") is not None:  # a figure recipe: the figures task collects its panels
            summary["gallery"] = OmegaConf.to_container(session.cfg.gallery, resolve=True)
        if session.is_main:
            save_record(session.output_dir / "summary.json", summary, key)
            session.tracker.log_summary(summary)
    except BaseException:
        session.tracker.finish(exit_code=1)
        raise
    session.tracker.finish(exit_code=0)
    return summary


# tasks whose independent units are shared out over torchrun's ranks; the others refuse a process group
SHARDED_TASKS = ("landscape",)


def refuse_unsharded(cfg: DictConfig) -> None:
    """Under ``torchrun`` with several processes, a task that does not shard its work would compute
    everything on every rank: refuse it at the start, in one line."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    task = str(cfg.task.get("name", cfg.task._target_))
    if world_size > 1 and task not in SHARDED_TASKS:
        raise ConfigError(f"task={task} does not share its work over the {world_size} torchrun processes (only "
                          f"task={', task='.join(SHARDED_TASKS)} does); run it as one process (python run.py ...), or as a "
                          f"multirun sweep (-m) for several configs")


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


def evaluators_for(session: Session, model: torch.nn.Module, splits=None, bn_mode: str | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, Evaluator]:
    """The objective on each split, built in this one place for scans, Hessian, mining and taxonomy alike,
    so that they all measure the same function: the same seeded subset of a split
    (``evaluation.subset``) and the same seeded BatchNorm examples (``evaluation.bn_examples``
    training inputs), whichever task asks and for whichever splits. ``bn_mode`` replaces the
    configured policy where a measure needs its own; ``dtype`` casts float data (a float64 Hessian)."""
    evaluation, data, seed = session.cfg.evaluation, session.data, int(session.cfg.seed)

    def cast(tensor: torch.Tensor) -> torch.Tensor:
        return tensor if dtype is None else as_dtype(tensor, dtype)

    bn_x = cast(data.train_x[seeded_draw(len(data.train_x), int(evaluation.bn_examples), seed, "bn_examples")])
    evaluators = {}
    for split in splits or evaluation.splits:
        x, y = data.split(split)
        if evaluation.subset is not None and int(evaluation.subset) < len(y):
            keep = seeded_draw(len(y), int(evaluation.subset), seed, f"subset:{split}")
            x, y = x[keep], y[keep]
        evaluators[split] = Evaluator(model, cast(x), cast(y), evaluation.batch_size, bn_mode or evaluation.bn_mode, bn_x,
                                      evaluation.first_layer_mb, evaluation.workers, session.loss, Residency.from_config(evaluation))
    return evaluators


def seeded_draw(size: int, count: int, seed: int, purpose: str) -> torch.Tensor:
    """``count`` of ``range(size)`` drawn without replacement, from a generator of its own per purpose:
    a split's subset is the same whether or not other splits were drawn before it."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(purpose.encode()))
    return torch.randperm(size, generator=generator)[:count]


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
