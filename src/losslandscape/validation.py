"""Every setting checked before any work: one line per problem, all problems at once.

:data:`SCHEMA` holds one table per config group: ``{key within the group: rule}``. A rule takes the
value (and the whole config, for references such as ``epoch:N``) and returns what would be right,
or ``None`` when the value is fine. A key a table names but a config lacks is skipped, so one table
serves every option of its group, and an option with other keys (``model=custom``) is only checked
on what the table knows. :data:`TARGET_SCHEMA` adds keys whose meaning depends on the option's
``_target_``. Adding a group's checks is one entry in :data:`SCHEMA`.

Why a rule table and not OmegaConf structured configs: ``OmegaConf.merge`` with a dataclass stops at
the first bad value and checks types only (no ranges, files or references), and groups whose options
carry different keys (datasets, models, directions, any ``_target_``) would need a schema per option.
Struct mode already rejects unknown keys at compose time; :func:`check_command_line` turns that
error into a suggestion of the closest key.

Three moments: :func:`check_command_line` (the overrides, before Hydra composes), :func:`validate_config`
(every group, before the session loads data or trains) and :func:`check_with_data` (what needs the
data or the model: the model accepts the inputs, ``checkpoint=`` fits it, ``top_k`` vs parameters).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from .errors import ConfigError, UserError

Rule = Callable[[Any, DictConfig], "str | None"]
SPLITS = ("train", "test")
ABSENT = object()  # a key this option does not have


# ----- rules: each returns what would be right, or None ------------------------------------------------------------

def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None, null: bool = False) -> Rule:
    def rule(value, cfg):
        if value is None and null:
            return None
        if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            bounds = f" >= {low}" if high is None and low is not None else f" in [{low}, {high}]" if low is not None else ""
            return f"expected an integer{bounds}" + (" or null" if null else "")
        return None
    return rule


def number(low: float | None = None, above: float | None = None, below: float | None = None, high: float | None = None,
           null: bool = False, nonzero: bool = False) -> Rule:
    def rule(value, cfg):
        if value is None and null:
            return None
        bad = (not is_number(value) or (low is not None and value < low) or (above is not None and value <= above)
               or (below is not None and value >= below) or (high is not None and value > high) or (nonzero and value == 0))
        if bad:
            bounds = [f">= {low}" if low is not None else "", f"> {above}" if above is not None else "",
                      f"< {below}" if below is not None else "", f"<= {high}" if high is not None else "",
                      "not 0" if nonzero else ""]
            return "expected a number " + " and ".join(b for b in bounds if b) + (" or null" if null else "")
        return None
    return rule


def one_of(*choices: Any, null: bool = False) -> Rule:
    def rule(value, cfg):
        if (value is None and null) or (not isinstance(value, bool) and value in choices):
            return None
        names = ", ".join(show(c) for c in choices) + (", null" if null else "")
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        return f"expected one of {names}" + (f" (did you mean {close[0]}?)" if close else "")
    return rule


def boolean() -> Rule:
    return lambda value, cfg: None if isinstance(value, bool) else "expected true or false"


def text(nonempty: bool = True, null: bool = False) -> Rule:
    def rule(value, cfg):
        if (value is None and null) or (isinstance(value, str) and (value or not nonempty)):
            return None
        return "expected a non-empty name" + (" or null" if null else "")
    return rule


def span(example: str = "[-1.0, 1.0]") -> Rule:
    def rule(value, cfg):
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) for v in value) and value[0] < value[1]:
            return None
        return f"expected [low, high] with low < high, e.g. {example}"
    return rule


def list_of(item: Rule, nonempty: bool = True, distinct: bool = False, null: bool = False, what: str = "values") -> Rule:
    def rule(value, cfg):
        if value is None and null:
            return None
        if not isinstance(value, (list, tuple)) or (nonempty and not value):
            return f"expected a{' non-empty' if nonempty else ''} list of {what}" + (" or null" if null else "")
        for v in value:
            if (problem := item(v, cfg)) is not None:
                return f"entry {show(v)}: {problem}"
        if distinct and len({show(v) for v in value}) != len(value):
            return f"expected distinct {what}, without repeats"
        return None
    return rule


def integer_or_list(low: int = 1) -> Rule:
    """A width or a list of widths (``model.hidden``: an MLP's layers, a CNN's linear layer)."""
    def rule(value, cfg):
        if is_int(value) and value >= low:
            return None
        return list_of(integer(low), nonempty=False, what=f"integers >= {low}")(value, cfg)
    return rule


def settings_block(keys: dict[str, Rule], example: str) -> Rule:
    """Null or a mapping of these keys only (``scan.*.precision``, ``scan.plane.refine``), each checked."""
    def rule(value, cfg):
        if value is None:
            return None
        if not isinstance(value, dict):
            return f"expected null or a mapping such as {example}"
        for key, item in value.items():
            if key not in keys:
                return f"no such key {key!r}: expected {', '.join(keys)}"
            if (problem := keys[key](item, cfg)) is not None:
                return f"{key}={show(item)}: {problem}"
        return None
    return rule


def power_of_two() -> Rule:
    return lambda value, cfg: None if is_int(value) and value >= 2 and not value & (value - 1) else "expected a power of 2 >= 2"


def workers() -> Rule:
    return lambda value, cfg: None if value == "auto" or (is_int(value) and value >= 1) else "expected auto or an integer >= 1"


def auto_or_count(low: int = 0) -> Rule:
    return lambda value, cfg: None if value == "auto" or (is_int(value) and value >= low) else f"expected auto or an integer >= {low}"


def auto_or_boolean() -> Rule:
    return lambda value, cfg: None if value == "auto" or isinstance(value, bool) else "expected auto, true or false"


def device() -> Rule:
    def rule(value, cfg):
        import torch

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun every rank takes cuda:LOCAL_RANK
            return None
        if value == "auto":
            return None
        try:
            chosen = torch.device(str(value))
        except (RuntimeError, ValueError):
            return "expected auto, cpu, cuda or cuda:N"
        count = torch.cuda.device_count()
        if chosen.type == "cuda" and (count == 0 or (chosen.index or 0) >= count):
            visible = f"GPUs cuda:0..cuda:{count - 1} are visible" if count else "no GPU is visible"
            return f"{visible}; use device=auto (a free GPU, else the CPU) or device=cpu"
        return None
    return rule


def existing_path(kind: str = "file or folder", null: bool = False, hint: str = "") -> Rule:
    def rule(value, cfg):
        if value is None and null:
            return None
        path = Path(absolute(str(value)))
        if kind == "folder" and path.is_dir() or kind != "folder" and path.exists():
            return None
        return f"no such {kind} ({path})" + (f"; {hint}" if hint else "")
    return rule


REFERENCE_FORMS = "init, final, epoch:N, seed:S, init_seed:S, data_seed:S, spawn:E:S or an existing checkpoint file or folder"


def checkpoint_reference(null: bool = False) -> Rule:
    """A model the run can reach: ``epoch:N`` only if training saves that epoch (train.epochs, train.checkpoint_every)."""
    def rule(value, cfg):
        if value is None and null:
            return None
        ref = str(value)
        epochs, every = cfg.train.get("epochs"), cfg.train.get("checkpoint_every")
        if ref in ("init", "final") or re.fullmatch(r"(seed|init_seed|data_seed):\d+", ref):
            return None
        if match := re.fullmatch(r"epoch:(\d+)", ref):
            if not (is_int(epochs) and is_int(every) and epochs >= 1 and every >= 1):
                return None  # train.epochs or train.checkpoint_every is reported on its own
            saved = [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]
            if int(match[1]) in saved:
                return None
            listed = f"1..{epochs}" if every == 1 else ", ".join(map(str, saved[:6])) + (", ..." if len(saved) > 6 else "")
            return (f"training saves epochs {listed} (train.epochs={epochs}, train.checkpoint_every={every}); "
                    f"use one of them, or raise train.epochs")
        if match := re.fullmatch(r"spawn:(\d+):(\d+)", ref):
            if is_int(epochs) and int(match[1]) > epochs:
                return f"a child can be spawned after epoch 0..{epochs} (train.epochs)"
            return None
        if Path(absolute(ref)).exists():
            return None
        return f"expected {REFERENCE_FORMS} (no such file: {absolute(ref)})"
    return rule


def auto_or_integer() -> Rule:
    """``auto`` (inferred from the targets), null (not class indices) or a class count >= 2."""
    check = integer(2, null=True)
    return lambda value, cfg: None if value == "auto" else check(value, cfg)


def importable_or_null() -> Rule:
    check = importable()
    return lambda value, cfg: None if value is None else check(value, cfg)


def importable() -> Rule:
    def rule(value, cfg):
        from hydra.utils import get_object

        try:
            get_object(str(value))
        except Exception as error:  # ImportError, AttributeError, ValueError: Hydra reports them as one type
            return f"cannot import it ({str(error).splitlines()[0]}); give a module path such as package.module.Class"
        return None
    return rule


def interpolation_pairs() -> Rule:
    """``task.pairs``: ``[name, model A, model B]`` with two different, reachable models."""
    reference = checkpoint_reference()

    def rule(value, cfg):
        if not isinstance(value, (list, tuple)) or not value:
            return "expected a non-empty list of [name, model A, model B], e.g. [[seeds,final,seed:1]]"
        names = set()
        for item in value:
            if not isinstance(item, (list, tuple)) or len(item) != 3 or str(item[1]) == str(item[2]) or str(item[0]) in names:
                return f"entry {show(item)}: expected [name, model A, model B] with a new name and two different models"
            names.add(str(item[0]))
            for ref in item[1:]:
                if (problem := reference(ref, cfg)) is not None:
                    return f"entry {show(item)}, model {ref}: {problem}"
        return None
    return rule


# ----- the schema: one table per group ------------------------------------------------------------------------------

NORMALIZATIONS = ("filter", "layer", "model", "none")
BIAS_BN = ("ignore", "include")
DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")

SCHEMA: dict[str, dict[str, Rule]] = {
    "": {
        "seed": integer(),
        "device": device(),
        "resume": boolean(),
        "progress": boolean(),
        "cache_dir": text(),
        "outputs_root": text(),
        "checkpoint": checkpoint_reference(null=True),
        "shapes.prominence": number(low=0),
        "shapes.flat_tolerance": number(low=0),
    },
    "dataset": {
        "_target_": importable(),
        "root": existing_path("folder", hint="point dataset.root at your copy of the files, or set DATA_ROOT"),
        "train_size": integer(1, null=True),
        "test_fraction": number(above=0, below=1),
        "n_samples": integer(2),
        "n_features": integer(1),
        "cluster_std": number(above=0),
        "noise": number(low=0),
        "seed": integer(),
    },
    "model": {  # the built-in architectures' keys; a custom model (any other _target_) is checked for _target_ only
        "_target_": importable(),
        "hidden": integer_or_list(),
        "channels": list_of(integer(1), what="integers >= 1"),
        "width": number(above=0),
        "batch_norm": boolean(),
    },
    "train": {
        "epochs": integer(1),
        "batch_size": integer(1),
        "optimizer._target_": importable(),
        "optimizer.lr": number(above=0),
        "optimizer.momentum": number(low=0, below=1),
        "optimizer.weight_decay": number(low=0),
        "schedule": one_of("cosine", "step", "constant"),
        "step_size": integer(1),
        "gamma": number(above=0),
        "checkpoint_every": integer(1),
        "log_every_n_steps": integer(1),
        "init_seed": integer(null=True),
        "data_seed": integer(null=True),
        "spawn_epoch": integer(0, null=True),
        "spawn_data_seed": integer(null=True),
    },
    "direction": {
        "_target_": importable(),
        "distribution": one_of(*DISTRIBUTIONS),
        "normalization": one_of(*NORMALIZATIONS),
        "bias_bn": one_of(*BIAS_BN),
        "scale": number(nonzero=True),
        "ratio": number(low=0, high=1),
        "paths": list_of(existing_path("file"), what="direction files (a run's directions/*.pt)"),
        "start": checkpoint_reference(null=True),
        "end": checkpoint_reference(),
        "which": one_of("top", "bottom"),
        "tol": number(above=0),
        "max_steps": integer(1),
        "ascent": boolean(),
        "unit_norm": boolean(),
    },
    "scan.*": {  # every chosen scan: scan.line, scan.plane, scan.ring, scan.interpolation
        "_target_": importable(),
        "name": text(),
        "span": span(),
        "x_span": span(),
        "y_span": span(),
        "points": integer(2),
        "x_points": integer(2),
        "y_points": integer(2),
        "curves": integer(1),
        "radii": list_of(number(above=0), what="radii > 0"),
        "angles": integer(3),
        "orthogonalize": boolean(),
        "start": checkpoint_reference(),
        "end": checkpoint_reference(),
        "precision": settings_block({"relative": number(low=0), "absolute": number(low=0),
                                     "confidence": number(above=0, below=1), "min_units": integer(2), "seed": integer()},
                                    "{relative: 0.01, confidence: 0.95}"),
        "refine": settings_block({"stride": power_of_two(), "budget": number(above=0, high=1), "levels": integer(1)},
                                 "{stride: 4, budget: 0.5}"),
    },
    "evaluation": {
        "splits": list_of(one_of(*SPLITS), distinct=True, what="splits (train, test)"),
        "batch_size": auto_or_count(1),
        "points_per_batch": integer(1),
        "workers": workers(),
        "bn_mode": one_of("eval", "recompute", "train"),
        "bn_examples": integer(1),
        "subset": integer(1, null=True),
        "first_layer_mb": number(low=0),
        "resident": auto_or_boolean(),
        "resident_budget_mb": number(above=0),
        "loader_workers": auto_or_count(),
        "prefetch_factor": integer(1),
    },
    "hessian": {
        "split": one_of(*SPLITS),
        "dtype": one_of("float64", "float32"),
        "parameters": text(),
        "hvp_mode": one_of("reverse", "forward"),
        "batches_per_term": integer(1, null=True),
        "seed": integer(),
        "eigen.method": one_of("lanczos", "power"),
        "eigen.top_k": integer(0),
        "eigen.bottom_k": integer(0),
        "eigen.tol": number(above=0),
        "eigen.max_steps": integer(1),
        "trace.hutchinson_samples": integer(0),
        "trace.hutchpp_products": integer(0),
        "density.runs": integer(0),
        "density.steps": integer(1),
        "density.sigma": number(above=0, null=True),
        "curvature.directions": integer(0),
        "curvature.window": number(above=0),
        "curvature.points": integer(3),
    },
    "mining": {
        "miner._target_": importable(),
        "miner.optimizer.lr": number(above=0),
        "miner.steps": integer(1),
        "miner.batch_size": integer(1, null=True),
        "miner.normalization": one_of(*NORMALIZATIONS),
        "miner.bias_bn": one_of(*BIAS_BN),
        "miner.scale": number(above=0),
        "objective._target_": importable(),
        "objective.a": number(above=0),
        "objective.cap": number(above=0),
        "objective.scan_margin": number(above=0),
        "split": one_of(*SPLITS),
        "init": one_of("gaussian", "hessian_bottom"),
        "runs": integer(1),
        "scan_points": integer(11),
        "plane_points": integer(5),
        "saddle": boolean(),
        "rays": integer(2),
    },
    "loss": {
        "_target_": importable(),
        "label_smoothing": number(low=0, below=1),
        "ignore_index": integer(),
    },
    "logger": {
        "_target_": importable(),
        "project": text(),
        "mode": one_of("auto", "online", "offline", "disabled"),
        "tags": list_of(text(), nonempty=False, what="names"),
    },
    "task": {  # keys several tasks share; what only one task has is in TARGET_SCHEMA
        "_target_": importable(),
        "name": text(),
        "split": one_of(*SPLITS),
        "span": span("[0.0, 1.0]"),
        "points": integer(2),
        "directions": integer(1),
        "normalization": one_of(*NORMALIZATIONS),
        "bias_bn": one_of(*BIAS_BN),
        "scale": number(nonzero=True),
        "log_scale": boolean(),
        "contour_levels": integer(2),
    },
}

TASKS = "losslandscape.tasks."
TARGET_SCHEMA: dict[str, dict[str, Rule]] = {
    "losslandscape.models.vgg.VGG": {"depth": one_of(11, 13, 16, 19)},
    "losslandscape.losses.MeanSquaredError": {"metric": one_of("r2", null=True)},
    "losslandscape.losses.CallableLoss": {"fn": importable(), "metric_fn": importable_or_null()},
    "losslandscape.models.hf.build_hf_model": {"task": one_of("causal_lm", "sequence_classification", "image_classification"),
                                               "path": text(null=True), "architecture": text(null=True)},
    "losslandscape.models.mlp.MLP": {"activation": one_of("relu", "tanh", "gelu")},
    "losslandscape.data.cifar.load_cifar": {"num_classes": one_of(10, 100)},
    "losslandscape.data.synthetic.make_gaussian_mixture": {"num_classes": integer(2)},
    TASKS + "plot.run_plot": {"split": one_of("train", "test", null=True), "file": existing_path("file", null=True)},
    "losslandscape.data.tensors.load_tensors": {"path": existing_path("file", hint="give the .pt, .npz or .safetensors file"),
                                                "num_classes": auto_or_integer()},
    "losslandscape.data.text.load_text": {"path": existing_path("file or folder", hint="give a text file or a folder of .txt files"),
                                          "block_size": integer(1)},
    "losslandscape.data.mnist.load_mnist": {"variant": one_of("mnist", "fashion_mnist")},
    TASKS + "asymmetric_valley.run_asymmetric_valley": {
        "ratios": list_of(number(low=0, high=1), distinct=True, what="ratios in [0, 1]"),
        "distributions": list_of(one_of(*DISTRIBUTIONS), distinct=True, what="distributions"),
    },
    TASKS + "interpolation.run_interpolation": {"pairs": interpolation_pairs()},
    TASKS + "spawning.run_spawning": {"spawn_epochs": list_of(integer(0), distinct=True, what="epochs"),
                                      "children": list_of(integer(), distinct=True, what="seeds")},
    TASKS + "ntk.run_ntk": {"examples": integer(1), "kernel": one_of("full", "trace", "sum"),
                            "dtype": one_of("float32", "float64"), "example_chunk": integer(1, null=True),
                            "max_jacobian_mb": number(above=0), "early_epochs": integer(1), "pairwise": boolean()},
    TASKS + "taxonomy.run_taxonomy": {
        "models": integer(2), "seeds": list_of(integer(), distinct=True, null=True, what="seeds"), "hessian": boolean(),
        "curve.split": one_of(*SPLITS), "curve.points": integer(3), "curve.steps": integer(0),
        "curve.optimizer": one_of("adam", "sgd"), "curve.lr": number(above=0), "curve.batch_size": integer(1),
        "curve.schedule": one_of("cosine", "constant"), "curve.save_every": integer(0),
        "cka.split": one_of(*SPLITS), "cka.examples": integer(2, null=True),
    },
    TASKS + "figures.run_figures": {"columns": integer(1)},
    TASKS + "dashboard.run_dashboard": {"sweep_dir": existing_path("folder", null=True, hint="give a multirun directory, outputs/multirun/<date>/<time>"),
                                        "multirun_dir": text(), "title": text(null=True)},
    TASKS + "report.run_report": {"source": one_of("sweep", "gallery"), "split": one_of(*SPLITS, null=True),
                                  "sweep_dir": existing_path("folder", null=True, hint="give a multirun directory, outputs/multirun/<date>/<time>"),
                                  "multirun_dir": text(), "experiments_dir": text(), "title": text(null=True)},  # variant: a ${hydra:} choice
    TASKS + "phase_plot.run_phase_plot": {"load": text(), "temperature": text()},  # sweep_dir: the task says how to make it
}


def cross_checks(cfg: DictConfig) -> list[str]:
    """Settings that are only wrong together."""
    problems, train, hessian = [], cfg.get("train") or {}, cfg.get("hessian") or {}
    epochs, spawn = train.get("epochs"), train.get("spawn_epoch")
    if is_int(spawn) and is_int(epochs) and spawn > epochs:
        problems.append(f"train.spawn_epoch={spawn}: expected an epoch in [0, train.epochs={epochs}]")
    if (spawn is None) != (train.get("spawn_data_seed") is None):
        problems.append(f"train.spawn_epoch={show(spawn)} train.spawn_data_seed={show(train.get('spawn_data_seed'))}: "
                        "a child needs both (the spawn epoch and its own data-order seed), a plain run neither")
    target = str((cfg.get("task") or {}).get("_target_", ""))
    if target == TASKS + "hessian.run_hessian":
        eigen = hessian.get("eigen") or {}
        steps = eigen.get("max_steps")
        for key in ("top_k", "bottom_k"):
            k = eigen.get(key)
            if is_int(k) and is_int(steps) and k > steps:
                problems.append(f"hessian.eigen.{key}={k}: Lanczos with hessian.eigen.max_steps={steps} finds at most {steps} "
                                f"eigenpairs; lower {key} or raise max_steps")
        if eigen.get("method") == "power" and is_int(eigen.get("bottom_k")) and eigen.get("bottom_k") > 0:
            problems.append(f"hessian.eigen.bottom_k={eigen.get('bottom_k')}: method=power finds the largest eigenvalues only; "
                            "set hessian.eigen.bottom_k=0 or hessian.eigen.method=lanczos")
    for name, scan in (cfg.get("scan") or {}).items():
        refine = scan.get("refine") if isinstance(scan, DictConfig) else None
        stride = refine.get("stride", 4) if isinstance(refine, DictConfig) else None
        if is_int(stride) and stride >= 2 and any(is_int(scan.get(k)) and (scan.get(k) - 1) % stride for k in ("x_points", "y_points")):
            problems.append(f"scan.{name}.refine.stride={stride}: must divide x_points - 1 and y_points - 1 "
                            f"(now {scan.get('x_points')} x {scan.get('y_points')}); e.g. 21 points with stride 4")
    splits = (cfg.get("evaluation") or {}).get("splits") or []
    task = cfg.get("task") or {}
    if target.startswith(TASKS) and target.split(".")[2] in ("asymmetric_valley", "shape_statistics", "spawning"):
        if task.get("split") in SPLITS and task.get("split") not in splits:
            problems.append(f"task.split={task.get('split')}: not evaluated; add it to evaluation.splits (now {show(list(splits))})")
    if target == TASKS + "mine.run_mine" and (m := cfg.get("mining")) and m.get("split") in SPLITS and m.get("split") not in splits:
        problems.append(f"mining.split={m.get('split')}: not evaluated; add it to evaluation.splits (now {show(list(splits))})")
    if target.endswith(("ntk.run_ntk", "taxonomy.run_taxonomy")) and cfg.get("checkpoint"):
        problems.append(f"checkpoint={cfg.get('checkpoint')}: task={task.get('name')} uses the cached training runs; "
                        "set checkpoint=null")
    return problems


# ----- the checks ---------------------------------------------------------------------------------------------------

def validate_config(cfg: DictConfig) -> None:
    """Check every group against :data:`SCHEMA`; raise one :class:`ConfigError` listing all problems."""
    problems = missing_values(cfg)
    for group, table in SCHEMA.items():
        for prefix, node in group_nodes(cfg, group):
            target = node.get("_target_") if isinstance(node, DictConfig) else None
            if group == "model" and not str(target).startswith("losslandscape.models."):
                table = {"_target_": table["_target_"]}  # a user's model: its arguments mean what its author says
            # an option's own rules replace the group's rule of the same key
            problems += check_table(cfg, prefix, node, {**table, **TARGET_SCHEMA.get(str(target), {})})
    problems += cross_checks(cfg)
    if problems:
        raise ConfigError(*problems)


def group_nodes(cfg: DictConfig, group: str) -> list[tuple[str, Any]]:
    """``(prefix, node)`` of a group in the config: ``scan.*`` is every chosen scan."""
    if group == "":
        return [("", cfg)]
    if group.endswith(".*"):
        parent = OmegaConf.select(cfg, group[:-2])
        return [(f"{group[:-2]}.{name}", node) for name, node in parent.items()] if isinstance(parent, DictConfig) else []
    node = OmegaConf.select(cfg, group)
    return [(group, node)] if isinstance(node, DictConfig) else []


def check_table(cfg: DictConfig, prefix: str, node: DictConfig, table: dict[str, Rule]) -> list[str]:
    problems = []
    for key, rule in table.items():
        full = f"{prefix}.{key}" if prefix else key
        parent, _, leaf = f".{key}".rpartition(".")
        holder = OmegaConf.select(node, parent[1:]) if parent else node
        if isinstance(holder, DictConfig) and leaf in holder and re.fullmatch(r"\$\{[\w.]+\}", str(holder._get_node(leaf)._value())):
            continue  # a copy of another key (seed: ${seed}): that key is checked and reported
        try:
            value = plain(OmegaConf.select(node, key, default=ABSENT, throw_on_missing=True))
        except MissingMandatoryValue:  # ??? is reported by missing_values
            continue
        except Exception as error:  # an interpolation that cannot be resolved
            problems.append(f"{full}: {str(error).splitlines()[0]}")
            continue
        if value is not ABSENT and (problem := rule(value, cfg)) is not None:
            problems.append(f"{full}={show(value)}: {problem}")
    return problems


def missing_values(cfg: DictConfig) -> list[str]:
    """Required keys (``???`` in the yaml) that were not given."""
    problems = []

    def walk(node, prefix):
        for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
            full = f"{prefix}.{key}" if prefix else str(key)
            if OmegaConf.is_missing(node, key):
                problems.append(f"{full}=???: required, give it on the command line, e.g. {full}=...")
            elif not OmegaConf.is_interpolation(node, key) and isinstance(node[key], (DictConfig, ListConfig)):
                walk(node[key], full)

    walk(cfg, "")
    return problems


def check_with_data(cfg: DictConfig, data: Any, loss: Any = None) -> None:
    """What needs the data or the model, right after loading the data and before any training:
    the model is built for these inputs and runs on two of them, its outputs fit the data's targets
    under the loss, ``checkpoint=`` fits it, direction files fit it, ``hessian.eigen.top_k`` does
    not exceed the parameters."""
    import torch

    from .losses import as_loss
    from .models.building import build_model, output_size

    shape, classes = tuple(data.input_shape), output_size(data)
    x = data.train_x[:2]
    model = build_model(cfg.model, shape, classes)  # a ModelError says what does not build
    try:
        with torch.no_grad():
            outputs = model.eval()(x)
    except Exception as error:  # the model's own forward: one line saying what it was given
        if isinstance(error, UserError):
            raise
        raise ConfigError(f"model._target_={cfg.model._target_}: cannot run it on {data.name} (inputs {tuple(x.shape)} "
                          f"{x.dtype}, {classes} outputs wanted): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; "
                          "choose a model for this dataset") from error
    as_loss(loss).check(outputs, data.train_y[:2], data.num_classes)
    problems = []
    if cfg.checkpoint and Path(absolute(str(cfg.checkpoint))).exists():
        from .training.checkpoints import CheckpointError, load_into_configured_model

        try:
            load_into_configured_model(absolute(str(cfg.checkpoint)), cfg.model, shape, classes, "cpu", cfg.get("checkpoint_prefix"))
        except CheckpointError as error:
            problems.append(f"checkpoint={cfg.checkpoint}: {error}")
    parameters = dict(model.named_parameters())
    if str(cfg.direction.get("_target_", "")).endswith("FileDirection"):
        problems += direction_file_problems(cfg.direction.paths, parameters)
    if str(cfg.task._target_) == TASKS + "hessian.run_hessian":
        from .tasks.hessian import parameter_subset

        names = parameter_subset(parameters, str(cfg.hessian.parameters)) or list(parameters)
        dim = sum(parameters[n].numel() for n in names)
        for key in ("top_k", "bottom_k"):
            if int(cfg.hessian.eigen[key]) > dim:
                problems.append(f"hessian.eigen.{key}={cfg.hessian.eigen[key]}: the Hessian over hessian.parameters="
                                f"{cfg.hessian.parameters} has dimension {dim}; use at most {dim}")
    if problems:
        raise ConfigError(*problems)


def direction_file_problems(paths: Sequence[str], parameters: dict[str, Any]) -> list[str]:
    from .directions.store import load_direction

    expected = {n: tuple(p.shape) for n, p in parameters.items()}
    problems = []
    for i, path in enumerate(paths):
        direction, _ = load_direction(absolute(str(path)), "cpu")
        found = {n: tuple(t.shape) for n, t in direction.items()}
        if found != expected:
            differ = sorted(set(expected) ^ set(found))[:3] or [n for n in expected if expected[n] != found[n]][:3]
            problems.append(f"direction.paths[{i}]={path}: does not fit the configured model ({differ} differ); "
                            "give directions saved by a run of this model")
    return problems


# ----- the command line ---------------------------------------------------------------------------------------------

def check_command_line(config_dir: str, config_name: str, argv: Sequence[str]) -> None:
    """Compose the config the way ``@hydra.main`` will, before it does: an override of a key that does
    not exist becomes ``key=value: no such key; did you mean ...?``, every such key at once, and an
    unknown group option lists the options. Sweep overrides (``-m a=1,2``) are checked by key only."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_path or args.experimental_rerun:
        return
    config_name = args.config_name or config_name
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except OverrideParseException as error:
        raise ConfigError(f"cannot read the command line: {str(error).splitlines()[0]} (see `python run.py --help`)") from error
    plain_args = [o.input_line for o in overrides if not o.is_sweep_override()]
    sweeps = {o.key_or_group: o.input_line for o in overrides if o.is_sweep_override() and "/" not in o.key_or_group}
    problems, unknown = [], {}
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        while True:
            try:
                cfg = compose(config_name, overrides=plain_args, return_hydra_config=True)
                break
            except MissingConfigException as error:  # a subclass of the next one: caught first
                raise ConfigError(missing_option_line(str(error))) from error
            except ConfigCompositionException as error:
                match = re.match(r"Could not override '([^']+)'", str(error))
                line = next((a for a in plain_args if match and a.split("=", 1)[0].lstrip("~+") == match[1]), None)
                if line is None:
                    raise ConfigError(" ".join(str(error).split())) from error
                unknown[match[1]] = line
                plain_args.remove(line)
    keys = dotted_keys(cfg)
    groups = set(cfg.hydra.runtime.choices)  # a group whose default is null (experiment) has no key in the composed config
    for key, line in sweeps.items():
        if key not in keys and key not in groups and not line.startswith(("+", "~")):
            unknown[key] = line
    for key, line in unknown.items():
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see `python run.py --cfg job` for every key"
        problems.append(f"{line}: no such key; {hint} (to add a new key: +{line})")
    if problems:
        raise ConfigError(*problems)


def missing_option_line(message: str) -> str:
    """Hydra's "Could not find 'dataset/foo'" with its list of options, as one line."""
    match = re.search(r"Could not find '([^']+)/([^'/]+)'", message)
    options = re.findall(r"^\t(\S+)$", message.split("Config search path")[0], flags=re.M)
    if not match or not options:
        return " ".join(message.split("Config search path")[0].split())
    group, option = match[1], match[2]
    close = difflib.get_close_matches(option, options, n=1)
    return (f"{group}={option}: no such option; choose one of {', '.join(options)}"
            + (f" (did you mean {group}={close[0]}?)" if close else ""))


def dotted_keys(cfg: DictConfig) -> list[str]:
    """Every key of the config as ``a.b.c`` (the ``hydra`` node included: its keys may be overridden too)."""
    keys = []

    def walk(node, prefix):
        for key in node.keys():
            full = f"{prefix}.{key}" if prefix else str(key)
            keys.append(full)
            if not OmegaConf.is_interpolation(node, key) and not OmegaConf.is_missing(node, key) and isinstance(node[key], DictConfig):
                walk(node[key], full)

    walk(cfg, "")
    return keys


# ----- reporting ----------------------------------------------------------------------------------------------------

def exit_on_user_error(run: Callable[[], Any]) -> Any:
    """Run ``run()``; a :class:`UserError` (also one Hydra's ``instantiate`` wrapped) ends the job with its
    message, one line per problem on stderr, and exit code 2. ``HYDRA_FULL_ERROR=1`` re-raises it, so the
    traceback shows; any other exception is a bug and propagates with its traceback."""
    try:
        return run()
    except Exception as error:
        user_error = cause_of_type(error, UserError)
        if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        for line in str(user_error).splitlines() or [type(user_error).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def cause_of_type(error: BaseException | None, kind: type) -> BaseException | None:
    while error is not None and not isinstance(error, kind):
        error = error.__cause__
    return error


def show(value: Any) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value)


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def absolute(path: str) -> str:
    """Relative paths are relative to the launch directory (Hydra may have changed the working directory)."""
    from hydra.utils import to_absolute_path

    return to_absolute_path(path)
