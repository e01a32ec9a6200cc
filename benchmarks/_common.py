"""Shared helpers of every script in ``benchmarks/``: timing, machine facts, tables, JSON, models.

Timing on a shared machine. Other jobs run on the same cores, so every comparison runs its
variants *interleaved*: round r runs A, B, C, ... with the order rotated by r, after waiting a
bounded time for the CPUs to be mostly idle. A variant's time is the median of its samples; a ratio
is the median over rounds of the per-round ratio, i.e. of two numbers measured seconds apart
(:func:`paired_ratio`), which cancels most of the slow drift of the machine's load.

Every result file ``results/<name>.json`` carries the machine, the package versions, the load
average when the script started and when it ended, and the idle fraction seen before each round.

Models and data:

- the scan benchmarks use the project's defaults: ``SmallCNN`` (channels 16, 32, hidden 64) and
  the ``MLP`` (hidden 64, 64), untrained (a forward pass costs the same at any weights);
- the Hessian benchmarks use the ``SmallCNN`` and a smaller ``MLP`` (hidden 32, 32; 3,466
  parameters, small enough for an exact dense float64 Hessian), trained a few epochs of plain SGD
  (:func:`trained_model`) so that the Hessian is not the one at initialization.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

THREADS = 2
RESULTS = Path(__file__).resolve().parent / "results"
STARTED: dict[str, Any] = {}  # load average and time when setup() ran

# --- setup and machine facts --------------------------------------------------------------------


def add_common_args(parser) -> None:
    parser.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads (default 2)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine before each timing round")


def setup(threads: int = THREADS, wait_quiet: bool = True) -> None:
    from losslandscape.allocator import keep_freed_memory

    keep_freed_memory()  # as run.py does: the same allocator settings for every engine in the process
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    QUIET["wait"] = wait_quiet
    STARTED.update(load_average=_load(), date=_now(), perf=time.perf_counter())
    # PyHessian's loss.backward(create_graph=True) warns about a parameter <-> gradient reference
    # cycle on every call; we break the cycle ourselves (release_pyhessian).
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")


def setup_from(args) -> None:
    setup(args.threads, not args.no_wait)


def _load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


PACKAGES = {  # import name: distribution name
    "numpy": "numpy",
    "scipy": "scipy",
    "loss_landscapes": "loss-landscapes",
    "pyhessian": "pyhessian",
    "curvlinops": "curvlinops-for-pytorch",
}


def machine() -> dict[str, Any]:
    """What the numbers were measured on, saved with them."""
    versions = {}
    for name, dist in PACKAGES.items():
        try:
            versions[name] = version(dist)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "date_started": STARTED.get("date"),
        "date_finished": _now(),
        "wall_seconds": time.perf_counter() - STARTED["perf"] if "perf" in STARTED else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "packages": versions,
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": STARTED.get("load_average"),
        "load_average_at_end": _load(),
        "idle_before_rounds": _idle_summary(),
        "note": "CPU cores shared with other jobs: timings are medians of interleaved rounds, ratios medians of paired ratios",
    }


def _idle_summary() -> dict[str, Any]:
    """How idle the CPUs were just before the timing rounds (1 = idle; below 0.75 the wait gave up)."""
    if not WAITS:
        return {"rounds": 0}
    return {"rounds": len(WAITS), "min": min(WAITS), "median": median(WAITS),
            "share_below_0.75": round(sum(w < QUIET["idle"] for w in WAITS) / len(WAITS), 3)}


def describe_machine() -> str:
    """One line for the top of a script's output."""
    return (f"{_cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"load average {STARTED.get('load_average')}")


# --- timing ----------------------------------------------------------------------------------------

# Before a round: wait until the CPUs are >= 75 % idle, at most 15 s per round and 90 s per interleaved() call.
QUIET = {"wait": True, "idle": 0.75, "max_wait_s": 15.0, "budget_s": 90.0}
WAITS: list[float] = []  # idle fraction seen before every round (saved with the results)


def idle_fraction(seconds: float = 0.25) -> float:
    """Fraction of all CPUs idle over ``seconds`` (from /proc/stat; 1.0 where it is unavailable)."""

    def read():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])

    try:
        idle0, total0 = read()
        time.sleep(seconds)
        idle1, total1 = read()
    except (OSError, IndexError, ValueError):
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(budget: list[float] | None = None) -> None:
    """Before a round, wait (a bounded time) until the CPUs are mostly idle.

    ``budget`` is a one-element list of seconds the caller still allows for waiting; it is spent here.
    """
    if not QUIET["wait"]:
        return
    started = time.perf_counter()
    limit = min(QUIET["max_wait_s"], budget[0] if budget else QUIET["max_wait_s"])
    idle = idle_fraction(0.1)
    while idle < QUIET["idle"] and time.perf_counter() - started < limit:
        idle = idle_fraction(0.25)
    if budget:
        budget[0] -= time.perf_counter() - started
    WAITS.append(round(idle, 2))


def interleaved(
    variants: dict[str, Callable[[], Any]],
    repeats: int = 5,
    min_seconds: float = 1.0,
    max_seconds: float = 60.0,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Wall seconds per call of every variant, one sample per round, the order rotated every round.

    Runs at least ``repeats`` rounds and until every variant has accumulated ``min_seconds``, but
    starts no new round after ``max_seconds`` of measuring (once ``min(3, repeats)`` rounds are done).
    """
    for f in variants.values():
        for _ in range(warmup):
            f()
    names = list(variants)
    samples: dict[str, list[float]] = {k: [] for k in names}
    measured, rounds, budget = 0.0, 0, [QUIET["budget_s"]]
    while True:
        wait_for_quiet(budget)
        started = time.perf_counter()
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - t0)
        rounds += 1
        measured += time.perf_counter() - started
        enough = rounds >= repeats and min(sum(v) for v in samples.values()) >= min_seconds
        out_of_time = rounds >= min(3, repeats) and measured > max_seconds
        if enough or out_of_time:
            return samples


def median(values) -> float:
    return float(statistics.median(values))


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[r] / b[r]``: both measured in the same round."""
    return median([x / y for x, y in zip(a, b)])


def min_ratio(a: list[float], b: list[float]) -> float:
    """``min(a) / min(b)``: the ratio of the fastest samples, the least disturbed by other jobs (a cross-check)."""
    return min(a) / min(b)


def summarize_samples(samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """``{variant: {median_s, min_s, samples_s}}`` of :func:`interleaved`'s samples."""
    return {k: {"median_s": median(v), "min_s": min(v), "samples_s": v} for k, v in samples.items()}


# --- output ----------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table that is also GitHub markdown."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e9:
            return f"{value:.2e}"
        if abs(value) >= 1e4:
            return f"{value:.0f}"
        return f"{value:.4g}"
    return str(value)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """``results/<name>.json``: the command, the machine (incl. load), then ``data``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "command": " ".join(["python", *sys.argv]), "machine": machine(), **data}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):  # tensors and numpy arrays / scalars
        return value.tolist()
    return float(value)


# --- data and models --------------------------------------------------------------------------------


def digits(train_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits training split, ``(1437, 1, 8, 8)`` float32 and int64 labels (or a seeded subset)."""
    from losslandscape.data.digits import load_digits

    data = load_digits(train_size=train_size)
    return data.train_x, data.train_y


def build_model(kind: str, input_shape=(1, 8, 8), num_classes: int = 10, seed: int = 0, **kwargs) -> torch.nn.Module:
    """``SmallCNN`` (``kind="cnn"``) or ``MLP`` (``kind="mlp"``) with the project's defaults unless ``kwargs``; seeded, eval mode."""
    from losslandscape.models.cnn import SmallCNN
    from losslandscape.models.mlp import MLP

    classes = {"cnn": SmallCNN, "mlp": MLP}
    if kind not in classes:
        raise ValueError(f"unknown model {kind!r}: expected one of {sorted(classes)}")
    torch.manual_seed(seed)
    return classes[kind](tuple(input_shape), num_classes, **kwargs).eval()


def directions(theta, count: int, seed: int = 0):
    """``count`` filter-normalized Gaussian directions (the project default), seeds ``seed, seed+1, ...``."""
    from losslandscape.directions.noise import NoiseDirection

    return [NoiseDirection().sample(theta, seed + i) for i in range(count)]


def shortcut_status(model, x, batch_size: int, theta, dirs, first_layer_mb: float) -> str:
    """Whether :class:`FirstLayerShortcut` is actually used with these settings, and why not."""
    from losslandscape.landscape import first_layer as fl

    if first_layer_mb <= 0:
        return "off"
    name = fl.first_layer(model, x[:2])
    if name is None:
        return "not applicable (no leading affine layer)"
    fan = fl.fan_in(dict(model.named_modules())[name])
    if fan < fl.MIN_FAN_IN_PER_DIRECTION * len(dirs):
        return f"skipped (fan-in {fan} < {fl.MIN_FAN_IN_PER_DIRECTION} x {len(dirs)} directions)"
    built = fl.FirstLayerShortcut.build(model, x, batch_size, theta, dirs, first_layer_mb * 2**20)
    return "used" if built is not None else "skipped (over the memory budget)"


# --- the Hessian benchmarks' models ---------------------------------------------------------------

HESSIAN_MODELS = {
    # name: (build_model kind, keyword arguments)
    "mlp": ("mlp", {"hidden": (32, 32)}),  # 3,466 parameters: the dense float64 Hessian is cheap
    "cnn": ("cnn", {}),  # the project default SmallCNN, 13,706 parameters
}

TRAINING = {"epochs": 10, "lr": 0.1, "batch_size": 64, "seed": 0, "optimizer": "plain SGD (no momentum, no weight decay)"}


def trained_model(name: str, x: torch.Tensor, y: torch.Tensor, **overrides) -> tuple[torch.nn.Module, dict]:
    """``HESSIAN_MODELS[name]`` after ``TRAINING['epochs']`` epochs of plain SGD on (x, y); eval mode, float32."""
    cfg = {**TRAINING, **overrides}
    kind, kwargs = HESSIAN_MODELS[name]
    model = build_model(kind, tuple(x.shape[1:]), int(y.max()) + 1, cfg["seed"], **kwargs)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    generator = torch.Generator().manual_seed(cfg["seed"])
    started = time.perf_counter()
    model.train()
    for _ in range(cfg["epochs"]):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), cfg["batch_size"]):
            batch = order[start : start + cfg["batch_size"]]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        logits = model(x)
    info = {
        "model": name,
        "architecture": type(model).__name__,
        "architecture_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "training": cfg,
        "training_seconds": time.perf_counter() - started,
        "train_loss": float(F.cross_entropy(logits, y)),
        "train_accuracy": float((logits.argmax(1) == y).float().mean()),
        "examples": len(y),
    }
    return model, info


def describe_model(info: dict) -> str:
    return (
        f"{info['architecture']}{info['architecture_kwargs'] or ''} ({info['num_parameters']:,} parameters) on "
        f"{info['examples']} digits training examples, trained {info['training']['epochs']} epochs of plain SGD "
        f"(lr {info['training']['lr']}, batch {info['training']['batch_size']}): train loss "
        f"{info['train_loss']:.4f}, accuracy {info['train_accuracy']:.3f}"
    )


def our_operator(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype=torch.float32, mode: str = "reverse"):
    """The project's Hessian operator of the full-batch mean cross-entropy (one evaluation batch = all of x)."""
    from losslandscape.hessian import HessianOperator
    from losslandscape.landscape.evaluator import Evaluator, parameters_of

    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    evaluator = Evaluator(model, x.to(dtype), y, batch_size=None)
    return HessianOperator.from_evaluator(evaluator, parameters_of(model), mode=mode)


def exact_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """The dense float64 Hessian of the mean cross-entropy over (x, y), in ``model.parameters()`` order.

    Forward-over-reverse (``jvp`` of ``grad``) vmapped over the identity's columns in chunks: the
    numbers of ``torch.func.hessian`` (= jacfwd(jacrev)) without its memory peak.
    """
    from torch.func import functional_call, grad, jvp, vmap

    model64 = copy.deepcopy(model).double().eval()
    names = [n for n, _ in model64.named_parameters()]
    params = dict(model64.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    buffers = dict(model64.named_buffers())
    x64 = x.double()

    def loss(w: torch.Tensor) -> torch.Tensor:
        state = {n: t.view(s) for n, t, s in zip(names, w.split(sizes), shapes)}
        return F.cross_entropy(functional_call(model64, {**state, **buffers}, (x64,)), y)

    gradient = grad(loss)
    column = vmap(lambda tangent: jvp(gradient, (flat,), (tangent,))[1])
    dim = flat.numel()
    hessian = torch.empty(dim, dim, dtype=torch.float64)
    for start in range(0, dim, chunk):
        stop = min(dim, start + chunk)
        basis = torch.zeros(stop - start, dim, dtype=torch.float64)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        hessian[start:stop] = column(basis)
    return hessian


def exact_spectrum(model, x, y, vectors: bool = False):
    """``(ascending eigenvalues, facts incl. timings and trace terms, the Hessian, eigenvectors or None)``
    of the exact dense float64 Hessian; ``vectors=True`` uses ``eigh`` instead of ``eigvalsh``."""
    started = time.perf_counter()
    hessian = exact_hessian(model, x, y)
    built = time.perf_counter() - started
    asymmetry = float((hessian - hessian.T).abs().max() / hessian.abs().max())
    hessian = (hessian + hessian.T) / 2
    started = time.perf_counter()
    if vectors:
        eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    else:
        eigenvalues, eigenvectors = torch.linalg.eigvalsh(hessian), None
    info = {
        "method": "dense float64 Hessian (vmapped jvp-of-grad over identity columns) + torch.linalg."
        + ("eigh" if vectors else "eigvalsh"),
        "dim": hessian.shape[0],
        "build_seconds": built,
        "eigh_seconds": time.perf_counter() - started,
        "relative_asymmetry": asymmetry,
        "trace": float(hessian.diagonal().sum()),
        "frobenius_squared": float((hessian**2).sum()),
        "diagonal_squared": float((hessian.diagonal() ** 2).sum()),
        "top10": eigenvalues[-10:].flip(0).tolist(),
        "bottom3": eigenvalues[:3].tolist(),
    }
    return eigenvalues, info, hessian, eigenvectors


# --- PyHessian ------------------------------------------------------------------------------------


def pyhessian_module():
    """PyHessian 0.1's ``pyhessian/hessian.py`` *module*, with a counter on its Hessian-vector products.

    What needs care on current PyTorch (nothing in the package itself is changed):

    1. ``pyhessian/__init__.py`` does ``from .hessian import hessian``, which rebinds the attribute
       ``pyhessian.hessian`` from the submodule to the class; the module (whose global
       ``hessian_vector_product`` the methods look up at call time) is reached via ``sys.modules``.
    2. ``hessian(...)`` calls ``loss.backward(create_graph=True)``: that accumulates into any ``.grad``
       already on the model (e.g. left over from training) and creates a parameter <-> gradient
       reference cycle (PyTorch's UserWarning) that keeps the double-backward graph alive. We set
       every ``.grad`` to None before building and after using a ``hessian`` object (:func:`release_pyhessian`).
    3. ``hessian.density()`` calls ``torch.eig``, removed from PyTorch; the benchmarks do not use it.
    ``eigenvalues()`` and ``trace()`` run unchanged.
    """
    import pyhessian  # noqa: F401  (registers the submodule)

    module = sys.modules["pyhessian.hessian"]
    if not hasattr(module, "_hvp_counter"):
        original = module.hessian_vector_product
        counter = {"count": 0}

        def counted(gradsH, params, v):
            counter["count"] += 1
            return original(gradsH, params, v)

        module.hessian_vector_product = counted
        module._hvp_counter = counter
    return module


def pyhessian_available() -> bool:
    try:
        pyhessian_module()
        return True
    except ImportError:
        return False


def pyhessian_hvp_count() -> int:
    return pyhessian_module()._hvp_counter["count"]


def release_pyhessian(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


@contextlib.contextmanager
def pyhessian_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """``pyhessian.hessian(model, CrossEntropyLoss(), data=(x, y), cuda=...)`` on the data's device,
    released afterwards (PyHessian puts its vectors on the CPU unless ``cuda=True``)."""
    module = pyhessian_module()
    release_pyhessian(model)
    try:
        yield module.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    finally:
        release_pyhessian(model)


def scan_afresh(scan, theta, directions, evaluators, path: Path, **settings):
    """``run_scan`` timed as a computation: the file of the previous round is removed first, since the
    result store would hand it back (same key) instead of evaluating the grid again."""
    from losslandscape.landscape.scans import run_scan

    Path(path).unlink(missing_ok=True)
    return run_scan(scan, theta, directions, evaluators, path, **settings)
