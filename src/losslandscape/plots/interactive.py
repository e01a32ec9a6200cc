"""Interactive surfaces (plotly): a rotatable 3D surface per split with its contour projected below,
hover values, the scanned model marked, train/test toggles and a linear/log10 loss switch.

The same figure is written as a self-contained HTML file (plotly.js inline: it opens offline, from
an e-mail or a cluster's file browser) and logged to W&B as an interactive panel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path

COLORSCALES = {"train": "Viridis", "test": "Cividis"}  # both colorblind-safe; two scales tell the surfaces apart
FLOOR_GAP = 0.35  # the projected contour lies this fraction of the loss range below the surface's minimum


def as_json_grid(values: np.ndarray) -> list:
    """An array as nested lists with None where the value is not finite: plotly leaves a gap there, and
    the JSON stays valid for browsers (``NaN`` is not JSON, and W&B's writer would emit it)."""
    values = np.asarray(values, dtype=float)
    cells = values.astype(object)
    cells[~np.isfinite(values)] = None
    return cells.tolist()


def surface_splits(result) -> list[str]:
    """The splits of a surface, in the order they were evaluated."""
    return [s for s in result.provenance.get("splits", []) if f"{s}_loss" in result.values] or sorted(
        k.removesuffix("_loss") for k in result.values if k.endswith("_loss"))


def loss_name(result) -> str:
    """The measured loss as the file names it (``cross-entropy loss``, ...), else plain ``loss``."""
    loss = result.provenance.get("loss")
    return str(loss.get("name", "loss")) if isinstance(loss, dict) else "loss"


def split_metrics(result, split: str) -> list[str]:
    """The other numbers stored per point besides the loss (``accuracy``; other losses may store others)."""
    return [k.removeprefix(f"{split}_") for k in result.values if k.startswith(f"{split}_") and k != f"{split}_loss"]


def loss_grid(result, split: str, log_scale: bool) -> np.ndarray:
    """The drawn heights: the loss, or its log10 (non-positive and non-finite losses become gaps)."""
    loss = np.asarray(result.values[f"{split}_loss"], dtype=float)
    if not log_scale:
        return np.where(np.isfinite(loss), loss, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(loss) & (loss > 0), np.log10(loss), np.nan)


def center_index(result) -> tuple[int, int]:
    """``(j, i)`` of the grid point nearest to the origin: the scanned model when 0 is on the grid."""
    return int(np.argmin(np.abs(result.axes["y"]))), int(np.argmin(np.abs(result.axes["x"])))


def _heights(result, splits: list[str], log_scale: bool) -> tuple[dict[str, np.ndarray], float, float]:
    grids = {s: loss_grid(result, s, log_scale) for s in splits}
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()] + [np.zeros(0)])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return grids, low, high


def _floor(low: float, high: float) -> float:
    return low - FLOOR_GAP * max(high - low, 1e-12)


def surface_figure(result, log_scale: bool = False, path_xy: np.ndarray | None = None,
                   axis_labels: tuple[str, str] = ("alpha", "beta"), title: str | None = None):
    """The plotly figure of a plane scan (``result.axes`` ``x`` and ``y``, ``(y, x)`` grids)."""
    import plotly.graph_objects as go

    splits = surface_splits(result)
    x, y = result.axes["x"], result.axes["y"]
    loss_label = f"log10 {loss_name(result)}" if log_scale else loss_name(result)
    grids, low, high = _heights(result, splits, log_scale)
    floor = _floor(low, high)
    j, i = center_index(result)
    figure = go.Figure()
    for index, split in enumerate(splits):
        metrics = split_metrics(result, split)
        customdata = np.stack([result.values[f"{split}_loss"], *(result.values[f"{split}_{m}"] for m in metrics)], axis=-1)
        hover = [f"{axis_labels[0]} = %{{x:.4g}}", f"{axis_labels[1]} = %{{y:.4g}}", f"{split} loss = %{{customdata[0]:.5g}}"]
        hover += [f"{split} {m} = %{{customdata[{k + 1}]:.4g}}" for k, m in enumerate(metrics)]
        figure.add_trace(go.Surface(
            x=x.tolist(), y=y.tolist(), z=as_json_grid(grids[split]), customdata=as_json_grid(customdata),
            name=f"{split} loss", legendgroup=split, showlegend=True, colorscale=COLORSCALES.get(split, "Viridis"),
            showscale=index == 0, colorbar=dict(title=dict(text=loss_label)), opacity=1.0 if index == 0 else 0.85,
            hovertemplate="<br>".join(hover) + "<extra></extra>",
            contours=dict(z=dict(show=True, project=dict(z=True), usecolormap=True, highlightcolor="white")),
        ))
        figure.add_trace(go.Scatter3d(
            x=[float(x[i])], y=[float(y[j])], z=as_json_grid([grids[split][j, i]]), mode="markers", legendgroup=split,
            name=f"model ({split} loss {result.values[f'{split}_loss'][j, i]:.4g})",
            marker=dict(symbol="diamond", size=6, color="red", line=dict(color="black", width=1)),
            hovertemplate=f"the scanned model<br>{split} loss = {result.values[f'{split}_loss'][j, i]:.5g}<extra></extra>",
        ))
    if path_xy is not None:  # checkpoints projected onto the plane: drawn on the projected contour, where they belong
        path_xy = np.asarray(path_xy, dtype=float)
        figure.add_trace(go.Scatter3d(
            x=path_xy[:, 0].tolist(), y=path_xy[:, 1].tolist(), z=[floor] * len(path_xy), mode="lines+markers",
            name="training path (saved epochs, projected)", line=dict(color="black", width=4),
            marker=dict(size=3, color="white", line=dict(color="black", width=1)),
            hovertemplate=f"{axis_labels[0]} = %{{x:.4g}}<br>{axis_labels[1]} = %{{y:.4g}}<extra>checkpoint</extra>",
        ))
    figure.update_layout(
        title=dict(text=title or f"{result.name}: {', '.join(splits)} {loss_label}"),
        scene=dict(xaxis_title=axis_labels[0], yaxis_title=axis_labels[1], zaxis=dict(title=loss_label, range=[floor, high]),
                   aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.7)),
        legend=dict(groupclick="togglegroup", itemclick="toggle"),
        updatemenus=_menus(result, splits, log_scale, 0 if path_xy is None else len(path_xy)),
        margin=dict(l=0, r=0, t=60, b=0),
    )
    return figure


def _menus(result, splits: list[str], log_scale: bool, path_points: int) -> list[dict]:
    """Buttons: which split is shown (traces 2k and 2k+1: split k's surface and model), and the loss scale."""
    count = 2 * len(splits)
    show = [dict(label="all splits", method="restyle", args=[{"visible": True}, list(range(count))])]
    for k, split in enumerate(splits):
        show.append(dict(label=f"{split} only", method="restyle",
                         args=[{"visible": [t // 2 == k for t in range(count)]}, list(range(count))]))
    j, i = center_index(result)
    scales = []
    for log in (False, True):
        grids, low, high = _heights(result, splits, log)
        heights = [value for s in splits for value in (as_json_grid(grids[s]), as_json_grid([grids[s][j, i]]))]
        traces = list(range(count))
        if path_points:  # the training path lies on the floor, which moves with the scale
            heights.append([_floor(low, high)] * path_points)
            traces.append(count)
        label = f"log10 {loss_name(result)}" if log else loss_name(result)
        scales.append(dict(label="log10 loss" if log else "linear loss", method="update",
                           args=[{"z": heights}, {"scene.zaxis.range": [_floor(low, high), high], "scene.zaxis.title.text": label},
                                 traces]))
    return [dict(type="buttons", direction="right", buttons=show, x=0.0, y=1.08, xanchor="left", showactive=True),
            dict(type="buttons", direction="right", buttons=scales, x=1.0, y=1.08, xanchor="right", active=int(log_scale),
                 showactive=True)]


def write_html(figure, path: str | Path) -> Path:
    """A self-contained page (plotly.js inline, about 4.7 MB): opens offline, needs no server."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.write_html(str(tmp), include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    return path
