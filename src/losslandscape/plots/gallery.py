"""The gallery of the figure recipes (``task=figures``): every recipe's panels in one figure, and the
1D curve shapes side by side, redrawn from the curves' data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..landscape.scans import ScanResult
from .landscape import loss_name
from .style import SPLIT_COLORS, STYLE, model_on_data, plt, save_figure

GALLERY_WIDTH = 16.0  # inches: two columns of a paper page at 200 dpi, or one slide
ROW_HEIGHT = 3.4  # inches a row of tiles aims at; each row is then stretched to fill the width exactly
TITLE_BAND = 0.45  # inches above each row for the tiles' titles (two lines of 9 pt)


def wrapped(title: str, width: float) -> str:
    """The title broken into lines that fit a tile ``width`` inches wide (9 pt: about 13 characters an inch):
    a long title over a narrow tile would run into its neighbour's."""
    import textwrap

    return "\n".join(textwrap.wrap(title, max(12, int(width * 13))))


def gallery_rows(aspects: list[float], columns: int, width: float = GALLERY_WIDTH, height: float = ROW_HEIGHT) -> list[list[int]]:
    """Tiles (by index) into rows of about ``height`` that fill ``width``: a row closes once its tiles at
    that height are as wide as the page or it holds ``columns`` tiles; a short last row joins the one
    before (stretched alone to the full width it would be far taller than the others)."""
    rows, row = [], []
    for index, aspect in enumerate(aspects):
        row.append(index)
        if sum(aspects[i] for i in row) * height >= width or len(row) == columns:
            rows.append(row)
            row = []
    if row:
        if rows and sum(aspects[i] for i in row) * height < 0.6 * width:
            rows[-1] += row
        else:
            rows.append(row)
    return rows


def plot_gallery(entries: list[dict[str, Any]], stem: Path, columns: int) -> list[Path]:
    """Every panel in one figure, rows justified to the full width (tiles keep their aspect ratio,
    each titled by its recipe): no blank columns whatever the panels' shapes. ``columns``: at most
    that many tiles per row (the last row may take one more)."""
    tiles = [(e["gallery"]["title"], plt.imread(panel)) for e in entries for panel in e["panels"]]
    aspects = [image.shape[1] / image.shape[0] for _, image in tiles]
    rows = gallery_rows(aspects, columns)
    heights = [GALLERY_WIDTH / sum(aspects[i] for i in row) for row in rows]
    total = sum(heights) + TITLE_BAND * len(rows)
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(GALLERY_WIDTH, total))
        top = total
        for row, height in zip(rows, heights):
            top -= TITLE_BAND + height
            left = 0.0
            for index in row:
                width = aspects[index] * height
                axis = figure.add_axes((left / GALLERY_WIDTH, top / total, width / GALLERY_WIDTH, height / total))
                axis.imshow(tiles[index][1], interpolation="lanczos")
                axis.set_axis_off()
                axis.set_title(wrapped(tiles[index][0], width), fontsize=9, pad=3)
                left += width
        return save_figure(figure, stem)


SHAPE_ORDER = ("v_basin", "v_side", "w_basin", "w_peak", "vvv_basin")  # the seed paper's order


def plot_curve_gallery(entries: list[dict[str, Any]], stem: Path) -> list[Path]:
    """The 1D shapes side by side (the seed paper's gallery), each the loss of the split its label was
    measured on (the first evaluated one: a mined w-peak lives on the train loss, far below the test loss)."""
    def order(entry):
        name = entry["gallery"]["name"].removeprefix("fig_")
        return (SHAPE_ORDER.index(name) if name in SHAPE_ORDER else len(SHAPE_ORDER), name)

    entries = sorted(entries, key=order)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3.0), squeeze=False)
        results = [ScanResult.load(entry["folder"] / entry["gallery"]["curve"]) for entry in entries]
        for axis, entry, result in zip(axes[0], entries, results):
            split = result.provenance.get("splits", ["train"])[0]
            values = result.values[f"{split}_loss"]
            axis.plot(result.axes["lambda"], np.where(np.isfinite(values), values, np.nan), color=SPLIT_COLORS.get(split))
            label = result.provenance.get("shape", {}).get(split, {}).get("label", "unlabelled")
            axis.axvline(0.0, color="0.5", linewidth=0.8)
            name = entry["gallery"]["name"].removeprefix("fig_").replace("_", "-")
            axis.set(xlabel=r"$\lambda$", ylabel=f"{split} {loss_name(result)}", title=f"{name}\n(measured: {label})")
        config = results[0].provenance.get("config")
        if config:
            figure.suptitle(f"The five curve shapes: {model_on_data(config)}", fontsize=STYLE["axes.titlesize"])
        figure.tight_layout()
        return save_figure(figure, stem)
