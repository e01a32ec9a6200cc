"""Seeing and sharing a surface: the interactive HTML page, the ParaView/Blender exports and the W&B panel,
each read back (HTML parsed, meshes read with meshio, the panel found through the offline .wandb record)
and compared with the scan's .npz file."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import meshio
import numpy as np
import plotly.graph_objects as go
import pytest

from losslandscape.landscape.scans import ScanResult
from losslandscape.plots.exports import export_surface
from losslandscape.plots.interactive import surface_figure, write_html
from losslandscape.tasks.landscape import run_landscape


def plotly_figures(html: str) -> list[tuple[list, dict]]:
    """``(data, layout)`` of every ``Plotly.newPlot("<div>", data, layout, config)`` call of a page."""
    decoder, found = json.JSONDecoder(), []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        data, end = decoder.raw_decode(html, match.end())
        layout, _ = decoder.raw_decode(html, re.match(r"\s*,\s*", html[end:]).end() + end)
        found.append((data, layout))
    return found


def as_array(value) -> np.ndarray:
    """A plotly JSON array: nested lists (null = a gap) or plotly's typed-array form ``{dtype, bdata, shape}``."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")]).astype(float)
    return np.array(value, dtype=float)  # None -> nan


def traces(data: list, kind: str) -> list[dict]:
    return [t for t in data if t["type"] == kind]


def synthetic_plane(loss_offset: float = 0.1) -> ScanResult:
    """A 3 x 5 bowl whose train loss diverges at one corner (inf) and whose test loss is nan at another."""
    x, y = np.linspace(-1.0, 1.0, 5), np.linspace(-0.5, 0.5, 3)
    alpha, beta = np.meshgrid(x, y)
    values = {"train_loss": alpha**2 + 4 * beta**2 + loss_offset, "train_accuracy": 1 - alpha**2 / 4,
              "test_loss": 2 * alpha**2 + beta**2 + 2 * loss_offset, "test_accuracy": 1 - beta**2}
    values["train_loss"][0, 0] = np.inf
    values["test_loss"][2, 4] = np.nan
    return ScanResult("plane", "bowl", {"x": x, "y": y}, values, {"splits": ["train", "test"]})


def test_the_html_page_holds_the_surfaces_hover_values_model_path_and_both_scales(tmp_path):
    result = synthetic_plane()
    path_xy = np.array([[0.9, 0.4], [0.3, -0.1], [0.0, 0.0]])
    page = write_html(surface_figure(result, log_scale=True, path_xy=path_xy), tmp_path / "bowl.html")
    html = page.read_text()
    assert "<script src=" not in html  # plotly.js is inline: the page opens offline
    ((data, layout),) = plotly_figures(html)
    go.Figure(data=data, layout=layout)  # plotly's schema accepts every property the page uses
    surfaces, points = traces(data, "surface"), traces(data, "scatter3d")
    assert [s["name"] for s in surfaces] == ["train loss", "test loss"]
    with np.errstate(divide="ignore"):
        for surface, split in zip(surfaces, ["train", "test"]):
            loss = result.values[f"{split}_loss"]
            expected = np.where(np.isfinite(loss), np.log10(loss), np.nan)
            np.testing.assert_array_equal(as_array(surface["z"]), expected)  # log10 heights, gaps where not finite
            np.testing.assert_array_equal(as_array(surface["x"]), result.axes["x"])
            custom = as_array(surface["customdata"])  # hover shows the loss itself and the accuracy
            np.testing.assert_array_equal(custom[..., 0], np.where(np.isfinite(loss), loss, np.nan))
            np.testing.assert_array_equal(custom[..., 1], result.values[f"{split}_accuracy"])
            assert "accuracy = %{customdata[1]" in surface["hovertemplate"]
            assert surface["contours"]["z"]["project"]["z"] is True
    model_train, model_test, path = points
    assert (model_train["x"], model_train["y"]) == ([0.0], [0.0])
    assert model_train["z"] == [pytest.approx(np.log10(0.1))] and model_test["z"] == [pytest.approx(np.log10(0.2))]
    np.testing.assert_array_equal(np.column_stack([path["x"], path["y"]]), path_xy)
    floor = layout["scene"]["zaxis"]["range"][0]
    assert path["z"] == [floor] * 3 and floor < np.log10(0.1)  # the path lies on the projected contour, below the surface

    splits_menu, scale_menu = layout["updatemenus"]
    assert [b["label"] for b in splits_menu["buttons"]] == ["all splits", "train only", "test only"]
    assert splits_menu["buttons"][2]["args"][0]["visible"] == [False, False, True, True]
    linear, log = scale_menu["buttons"]
    assert scale_menu["active"] == 1 and log["args"][0]["z"][0] == surfaces[0]["z"]
    np.testing.assert_array_equal(as_array(linear["args"][0]["z"][0]), np.where(np.isfinite(result.values["train_loss"]),
                                                                                result.values["train_loss"], np.nan))
    assert linear["args"][0]["z"][1] == [0.1] and linear["args"][2] == [0, 1, 2, 3, 4]


def test_meshes_hold_the_grid_and_leave_out_points_that_are_not_finite(tmp_path):
    result = synthetic_plane()
    vtu, ply, obj = export_surface(result, tmp_path)
    alpha, beta = np.meshgrid(result.axes["x"], result.axes["y"])

    grid = meshio.read(vtu)  # flat for ParaView's Warp By Scalar, every grid as point data, the npz's row order
    np.testing.assert_array_equal(grid.points, np.column_stack([alpha.ravel(), beta.ravel(), np.zeros(15)]))
    for key, values in result.values.items():
        np.testing.assert_array_equal(grid.point_data[key].reshape(3, 5), values)
    (quads,) = grid.cells
    assert quads.type == "quad" and len(quads.data) == 2 * 4
    assert set(quads.data[0]) == {0, 1, 5, 6}  # the first cell joins the corner's neighbours on the grid

    mesh = meshio.read(ply)  # z = train loss; the diverged corner (inf) and the two triangles that meet there are gone
    keep = np.isfinite(result.values["train_loss"]).ravel()
    expected = np.column_stack([alpha.ravel(), beta.ravel(), result.values["train_loss"].ravel()])[keep]
    np.testing.assert_array_equal(mesh.points, expected)
    np.testing.assert_array_equal(mesh.point_data["test_accuracy"], result.values["test_accuracy"].ravel()[keep])
    assert len(mesh.cells_dict["triangle"]) == 2 * 8 - 2  # each cell is cut along the diagonal from its first corner
    obj_mesh = meshio.read(obj)
    np.testing.assert_allclose(obj_mesh.points, expected, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(obj_mesh.cells_dict["triangle"], mesh.cells_dict["triangle"])


def test_the_landscape_task_writes_the_page_the_exports_and_a_wandb_panel_of_its_surface(tiny_config):
    from losslandscape.tracking.wandb_records import finished_run_file, logged_history

    cfg = tiny_config("logger=wandb", "logger.mode=offline", "scan=plane")
    summary = run_landscape(cfg)
    out = Path(cfg.output_dir)
    plane = ScanResult.load(out / "surfaces/plane.npz")
    assert str(out / "figures/plane.html") in summary["scans"]["plane"]["figures"]
    assert summary["scans"]["plane"]["exports"] == [str(out / f"surfaces/plane.{s}") for s in ("vtu", "ply", "obj")]

    ((data, _),) = plotly_figures((out / "figures/plane.html").read_text())
    for surface, split in zip(traces(data, "surface"), ["train", "test"]):
        np.testing.assert_array_equal(as_array(surface["z"]), plane.values[f"{split}_loss"])
    grid = meshio.read(out / "surfaces/plane.vtu")
    np.testing.assert_array_equal(grid.point_data["test_loss"].reshape(3, 5), plane.values["test_loss"])

    record_file = finished_run_file(out)
    (panel,) = [row for row in logged_history(record_file) if "plane/interactive/_type" in row]
    assert panel["plane/interactive/_type"] == "plotly-file"
    logged = json.loads((record_file.parent / "files" / panel["plane/interactive/path"]).read_text())
    logged_surfaces = traces(logged["data"], "surface")
    np.testing.assert_array_equal(as_array(logged_surfaces[0]["z"]), plane.values["train_loss"])
    np.testing.assert_array_equal(as_array(logged_surfaces[1]["customdata"])[..., 1], plane.values["test_accuracy"])
