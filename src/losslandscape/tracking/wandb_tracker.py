"""Weights & Biases adapter: consumes result objects and files, never leaks into the core.

Without credentials (or without network) the run is written offline into the run directory, with
one notice saying how to upload it later with ``wandb sync``.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .sweep_jobs import flatten, with_scalar_headlines

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
TABLE_ROW_LIMIT = 10_000  # W&B keeps at most this many rows of a logged table
# The saved history's names of metrics that Lightning logs per step and per epoch; live, the epoch value is `<name>_epoch`
LIVE_KEYS = {"train/loss": "train/loss_epoch"}


def has_wandb_credentials() -> bool:
    """An API key in the environment or in ``~/.netrc`` for the configured W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def server_reachable(timeout: float = 3.0) -> bool:
    """Whether the configured W&B host accepts a connection: wandb.init would otherwise retry an
    unreachable server until its init_timeout, and leave a run folder of the failed attempt behind."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:  # refused, no route, name not resolved, timed out
        return False


def sweep_group(sweep_dir: str | Path) -> str:
    """The W&B group of a multirun's jobs: its folder and the folder above, ``2026-12-02/07-05-58`` for
    Hydra's ``outputs/multirun/<date>/<time>``, so sweeps started at the same time of day on two days differ."""
    path = Path(sweep_dir)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


class NullTracker:
    """``logger=none``: every call is accepted and nothing is sent anywhere."""

    run = None

    def lightning_logger(self) -> None:
        return None

    def log_history(self, history: list[dict[str, float]]) -> None: ...

    def log_scan(self, result: Any, figures: list[Path], interactive: Any = None) -> None: ...

    def log_summary(self, summary: dict[str, Any]) -> None: ...

    def log_scan_collection(self, name: str, lambdas: Any, curves: Any, labels: list[str], figures: list[Path]) -> None: ...

    def log_files(self, name: str, kind: str, paths: list[Path], metadata: dict[str, Any] | None = None) -> None: ...

    def log_spectrum(self, name: str, nodes: Any, weights: Any, eigen: dict[str, Any]) -> None: ...

    def log_figures(self, name: str, figures: list[Path]) -> None: ...

    def log_series(self, name: str, step_key: str, rows: list[dict[str, Any]]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class WandbTracker(NullTracker):
    """One W&B run per job: training curves, every curve and surface, the summary."""

    def __init__(
        self,
        output_dir: str | Path,
        run_config: dict[str, Any],
        project: str = "losslandscape",
        entity: str | None = None,
        mode: str = "auto",
        group: str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        overrides: list[str] | None = None,
        sweep: str | None = None,
    ):
        """``overrides`` (the job's command-line overrides) name and tag the run; runs of one
        ``sweep`` (a multirun directory) share it as their group unless ``group`` is set."""
        import wandb

        if mode not in MODES:
            raise ValueError(f"unknown logger.mode {mode!r}: expected one of {', '.join(MODES)}")
        self._wandb = wandb
        if mode == "auto":
            mode = "online" if has_wandb_credentials() else "offline"
            if mode == "offline":
                print(f"W&B: no API key found, logging offline to {output_dir}/wandb (upload later with `wandb sync`)")
        if mode == "online" and not server_reachable():
            print(f"W&B: cannot reach {os.environ.get('WANDB_BASE_URL', 'https://api.wandb.ai')}, logging offline to "
                  f"{output_dir}/wandb (upload later with `wandb sync`)")
            mode = "offline"
        overrides = [o for o in overrides or [] if not o.startswith(("hydra.", "output_dir=", "cache_dir="))]
        kwargs = dict(
            project=project, entity=entity, group=group or sweep, job_type=job_type,
            name=name or (" ".join(overrides)[:128] or None),
            tags=[*(tags or []), *(o[:64] for o in overrides)],  # W&B tags hold at most 64 characters
            config=run_config, dir=str(output_dir), reinit="finish_previous",
            # online, an unreachable server costs half a minute, not the default 90 s; offline needs no server
            settings=wandb.Settings(init_timeout=30 if mode == "online" else 120),
        )
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as error:  # no network or a rejected key: keep the run, offline
            if mode != "online":
                raise
            print(f"W&B: could not reach the server ({type(error).__name__}), logging offline to {output_dir}/wandb")
            self.run = wandb.init(mode="offline", **kwargs)

    def lightning_logger(self) -> Any:
        from pytorch_lightning.loggers import WandbLogger

        return WandbLogger(experiment=self.run)

    def log_history(self, history: list[dict[str, float]]) -> None:
        """Per-epoch training metrics of cached checkpoints, under the keys a live training run logs through
        Lightning and against ``epoch``, so reused and freshly trained runs share their dashboard lines;
        and the whole history as the table ``train/history``."""
        if not history:
            return
        for prefix in ("train", "test"):
            self.run.define_metric(f"{prefix}/*", step_metric="epoch")
        for row in history:  # the saved history counts finished epochs (1, 2, ...), Lightning logs the epoch index (0, 1, ...)
            metrics = {LIVE_KEYS.get(k, k): v for k, v in row.items() if v is not None and k != "epoch"}
            self.run.log({**metrics, "epoch": int(row["epoch"]) - 1})
        columns = sorted({k for row in history for k in row})
        table = self._wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in history])
        self.run.log({"train/history": table})

    def log_scan(self, result: Any, figures: list[Path], interactive: Any = None) -> None:
        """A curve or surface under its scan's name: figures as images, values as a table (an artifact if large),
        and ``interactive`` (a plotly figure of a surface) as a rotatable panel ``<scan>/interactive``."""
        prefix = result.name
        payload: dict[str, Any] = {
            f"{prefix}/{Path(f).stem.removeprefix(prefix).strip('_') or 'figure'}": self._wandb.Image(str(f))
            for f in figures
            if str(f).endswith(".png")
        }
        if interactive is not None:
            payload[f"{prefix}/interactive"] = self._wandb.Plotly(interactive)
        columns, rows = _scan_rows(result)
        if len(rows) <= TABLE_ROW_LIMIT:
            table = self._wandb.Table(columns=columns, data=rows)
            payload[f"{prefix}/table"] = table
            if len(result.axes) == 1:
                for key in result.values:
                    payload[f"{prefix}/plot_{key}"] = self._wandb.plot.line(table, columns[0], key, title=f"{prefix}: {key}")
        elif result.provenance.get("path"):
            self.log_files(f"{result.kind}-{prefix}", "surface", [Path(result.provenance["path"])])
        self.run.log(payload)

    def log_scan_collection(self, name: str, lambdas: Any, curves: Any, labels: list[str], figures: list[Path]) -> None:
        """Many labelled curves of one scan: the figures, and a table of (direction, label, curve values)."""
        payload: dict[str, Any] = {f"{name}/{Path(f).stem}": self._wandb.Image(str(f)) for f in figures if str(f).endswith(".png")}
        columns = ["direction", "label", *[f"lambda={v:.3g}" for v in lambdas]]
        payload[f"{name}/curves"] = self._wandb.Table(columns=columns, data=[[i, lab, *map(float, c)] for i, (lab, c) in enumerate(zip(labels, curves))])
        self.run.log(payload)

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(with_scalar_headlines(flatten(summary)))

    def log_files(self, name: str, kind: str, paths: list[Path], metadata: dict[str, Any] | None = None) -> None:
        """Checkpoints and directions as versioned artifacts (W&B stores identical content once)."""
        artifact = self._wandb.Artifact(name, type=kind, metadata=metadata or {})
        for path in paths:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def log_spectrum(self, name: str, nodes: Any, weights: Any, eigen: dict[str, Any]) -> None:
        """A spectrum as a histogram (SLQ nodes, weighted) plus the raw nodes, weights and eigenvalues."""
        nodes, weights = np.asarray(nodes), np.asarray(weights)
        counts, edges = np.histogram(nodes.ravel(), bins=64, weights=weights.ravel() / len(nodes))
        rows = [[run, float(n), float(w)] for run in range(len(nodes)) for n, w in zip(nodes[run], weights[run])]
        payload = {
            f"{name}/histogram": self._wandb.Histogram(np_histogram=(counts, edges)),
            f"{name}/nodes": self._wandb.Table(columns=["run", "node", "weight"], data=rows),
        }
        for which, found in eigen.items():
            payload[f"{name}/{which}_eigenvalues"] = self._wandb.Table(
                columns=["index", "eigenvalue"], data=[[i, float(v)] for i, v in enumerate(found["eigenvalues"])]
            )
        self.run.log(payload)

    def log_figures(self, name: str, figures: list[Path]) -> None:
        self.run.log({f"{name}/{Path(f).stem}": self._wandb.Image(str(f)) for f in figures if str(f).endswith(".png")})

    def log_series(self, name: str, step_key: str, rows: list[dict[str, Any]]) -> None:
        """Per-item measures as line charts against their own x axis (e.g. epoch), not the global step."""
        self.run.define_metric(f"{name}/{step_key}")
        self.run.define_metric(f"{name}/*", step_metric=f"{name}/{step_key}")
        for row in rows:
            self.run.log({f"{name}/{k}": v for k, v in row.items() if v is not None})

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def _scan_rows(result: Any) -> tuple[list[str], list[list[float]]]:
    axis_names = list(result.axes)
    grids = np.meshgrid(*[result.axes[a] for a in reversed(axis_names)], indexing="ij")
    coords = [g.ravel() for g in reversed(grids)]
    keys = list(result.values)
    # every value's standard error and the examples each point read, as the file keeps them
    extras = {**{f"{k}_se": v for k, v in getattr(result, "errors", {}).items()},
              **{f"{k}_examples": v for k, v in getattr(result, "examples", {}).items()},
              **{f"evaluated_{k}": v for k, v in getattr(result, "evaluated", {}).items()}}
    columns = axis_names + keys + list(extras)
    data = np.stack(coords + [result.values[k].ravel() for k in keys] + [np.asarray(v, dtype=float).ravel() for v in extras.values()], axis=1)
    return columns, data.tolist()

