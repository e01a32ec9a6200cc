"""One figure style for every recipe, and saving each figure as PNG and vector PDF."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on clusters and CI without a display
import matplotlib.pyplot as plt  # noqa: E402

from ..files import atomic_path  # noqa: E402

# TrueType text in PDFs (pdf.fonttype 42) goes through fontTools' subsetter, which logs a dozen INFO lines per
# figure; Hydra's logging would put them into every job's log
logging.getLogger("fontTools").setLevel(logging.WARNING)

# Okabe & Ito's palette: told apart with every common colour-vision deficiency (matplotlib's tab10 is not)
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STYLE = {
    "figure.dpi": 100,
    "font.family": "DejaVu Sans",
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (searchable, editable), not outlines
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "image.cmap": "viridis",
    "savefig.dpi": 200,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.bbox": "tight",
}
SPLIT_COLORS = {"train": OKABE_ITO[0], "test": OKABE_ITO[1]}

DIRECTION_WORDS = {  # a direction's ``describe()["type"]`` as a figure title says it
    "NoiseDirection": "{normalization}-normalized {noise} direction",
    "SignConsistentDirection": "sign-consistent {noise} direction (r = {ratio})",
    "BetweenCheckpoints": "direction from {start} to {end}",
    "TrajectoryPCA": "trajectory-PCA directions",
    "FileDirection": "directions from files",
    "GradientDirection": "gradient direction",
    "HessianEigenvector": "Hessian {which} eigenvector",
}


def direction_words(direction: dict) -> str:
    """``filter-normalized gaussian direction``: what a scan moved along, from its provenance."""
    template = DIRECTION_WORDS.get(str(direction.get("type")), str(direction.get("type", "direction")))
    noise = {"gaussian": "Gaussian", "rademacher": "Rademacher"}.get(str(direction.get("distribution")), direction.get("distribution"))
    try:
        named = {k: ("the scanned model" if v is None else v) for k, v in direction.items()}  # start None: centred on it
        return template.format(**{**named, "noise": noise}).replace("none-normalized ", "")
    except (KeyError, IndexError):
        return template.split(" {")[0]


def model_on_data(config: dict) -> str:
    """``SmallCNN on digits``: the model class and the data set of a run's config."""
    model = str((config.get("model") or {}).get("_target_", "model")).rsplit(".", 1)[-1]
    data = config.get("dataset") or {}
    name = str(data.get("_target_", "data")).rsplit(".", 1)[-1].removeprefix("load_").removeprefix("make_")
    if name == "cifar" and data.get("num_classes"):
        name = f"cifar{data['num_classes']}"
    return f"{model} on {name}"


def scan_context(result) -> str:
    """The first title line of a scan's figure: model, data and direction, e.g.
    ``SmallCNN on digits, filter-normalized gaussian direction``."""
    provenance = getattr(result, "provenance", {}) or {}
    parts = [model_on_data(provenance["config"])] if provenance.get("config") else []
    if provenance.get("direction"):
        words = direction_words(provenance["direction"])
        plural = len(getattr(result, "axes", {})) == 2 and words.endswith(" direction")  # a plane has two
        parts.append(words + ("s" if plural else ""))
    elif getattr(result, "kind", None) == "interpolation":
        parts.append("linear interpolation")
    return ", ".join(parts) or result.name


def save_figure(figure: plt.Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically and close the figure."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = Path(f"{stem}{suffix}")
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix[1:])
        paths.append(path)
    plt.close(figure)
    return paths
