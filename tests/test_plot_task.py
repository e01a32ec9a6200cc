"""task=plot: a saved result redrawn with other limits, levels and scales, recomputing nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import compose_config
from losslandscape.landscape.scans import ScanResult
from losslandscape.tasks.plot import run_plot
from test_view import as_array, plotly_figures, synthetic_plane, traces


def saved(result: ScanResult, path: Path) -> Path:
    result.save(path)
    return path


def test_a_saved_surface_is_redrawn_cropped_clipped_and_in_log_scale(tmp_path):
    result = synthetic_plane()
    file = saved(result, tmp_path / "bowl.npz")
    cfg = compose_config(tmp_path, ["task=plot", f"task.file={file}", "task.xlim=[-0.5,1]", "task.vmax=1.5",
                                    "task.log_scale=true", "task.levels=[0.2,0.5,1,1.5]", "task.stem=zoom"])
    summary = run_plot(cfg)
    figures = Path(cfg.output_dir) / "figures"
    assert sorted(Path(f).name for f in summary["figures"]) == [
        "zoom.html", "zoom_contour.pdf", "zoom_contour.png", "zoom_surface.pdf", "zoom_surface.png"]
    assert all((figures / Path(f).name).stat().st_size > 0 for f in summary["figures"])

    ((data, _),) = plotly_figures((figures / "zoom.html").read_text())
    surface = traces(data, "surface")[0]
    np.testing.assert_array_equal(as_array(surface["x"]), [-0.5, 0.0, 0.5, 1.0])  # alpha in [-0.5, 1] of -1, -0.5, ..., 1
    window = result.values["train_loss"][:, 1:]
    expected = np.log10(np.minimum(window, 1.5))  # the rim above vmax drawn at vmax
    np.testing.assert_array_equal(as_array(surface["z"]), expected)
    assert np.isfinite(expected).all() and expected.max() == np.log10(1.5)


def test_a_saved_curve_is_redrawn_in_a_window(tmp_path):
    lam = np.linspace(-1.0, 1.0, 9)
    curve = ScanResult("line", "line", {"lambda": lam}, {"train_loss": 1 + lam**2, "train_accuracy": 1 - lam**2 / 2},
                       {"splits": ["train"]})
    file = saved(curve, tmp_path / "line.npz")
    summary = run_plot(compose_config(tmp_path, ["task=plot", f"task.file={file}", "task.xlim=[0,1]", "task.log_scale=true"]))
    assert sorted(Path(f).name for f in summary["figures"]) == ["line.pdf", "line.png"]


@pytest.mark.parametrize("overrides, message", [
    ([], "task=plot needs task.file=<a curves/ or surfaces/ .npz of an earlier run>"),
    (["task.file=nowhere.npz"], "task.file=nowhere.npz does not exist"),
    (["task.vmax=2"], "task.vmin, task.vmax and task.ylim apply to surfaces; line is a line scan"),
    (["task.xlim=[1,0]"], r"task.xlim must be \[low, high\] with low < high, got \[1, 0\]"),
    (["task.xlim=[0.1,0.2]"], r"the window \[0.1, 0.2\] keeps fewer than 2 of the 9 points of lambda"),
    (["task.split=test"], "task.split=test is not in line: it has train"),
])
def test_bad_plot_settings_name_what_is_wrong(tmp_path, overrides, message):
    lam = np.linspace(-1.0, 1.0, 9)
    file = saved(ScanResult("line", "line", {"lambda": lam}, {"train_loss": 1 + lam**2}, {"splits": ["train"]}), tmp_path / "line.npz")
    given = ["task=plot", *([] if not overrides or overrides[0].startswith("task.file") else [f"task.file={file}"]), *overrides]
    with pytest.raises(ValueError, match=message):
        run_plot(compose_config(tmp_path, given))
