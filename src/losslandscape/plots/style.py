"""One figure style for every recipe, and saving each figure as PNG and vector PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on clusters and CI without a display
import matplotlib.pyplot as plt  # noqa: E402

from ..files import atomic_path  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.bbox": "tight",
}
SPLIT_COLORS = {"train": "tab:blue", "test": "tab:orange"}


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
