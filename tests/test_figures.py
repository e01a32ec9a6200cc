"""Figure recipes and the gallery task that collects them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from losslandscape.landscape.scans import ScanResult
from losslandscape.plots.style import plt, save_figure
from losslandscape.tasks.figures import collect_results, run_figures

from conftest import CONF_DIR, compose_config

RECIPES = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("fig_*.yaml"))


def test_the_seed_papers_figure_types_each_have_a_recipe():
    wanted = {"fig_v_basin", "fig_v_side", "fig_w_basin", "fig_w_peak", "fig_vvv_basin", "fig_saddle", "fig_wine_bottle",
              "fig_hessian_lens", "fig_trajectory_pca", "fig_asymmetric_valley", "fig_interpolation", "fig_spawning",
              "fig_ntk", "fig_phase"}
    assert wanted <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_with_a_gallery_block_named_after_it(tmp_path, recipe):
    cfg = compose_config(tmp_path, [f"experiment={recipe}"])
    assert cfg.gallery.name == recipe
    assert cfg.gallery.panels and all(p.endswith(".png") for p in cfg.gallery.panels)
    assert cfg.task._target_.startswith("losslandscape.tasks.")


def fake_recipe(root: Path, name: str, lambdas, losses, label: str) -> None:
    """A finished recipe folder as a recipe run leaves it: summary with gallery block, a panel, a curve."""
    folder = root / name / "digits-cnn"
    (folder / "figures").mkdir(parents=True)
    figure, axis = plt.subplots()
    axis.plot(lambdas, losses)
    save_figure(figure, folder / "figures" / "line")
    values = {"train_loss": np.asarray(losses), "train_accuracy": np.ones(len(lambdas))}
    ScanResult("line", "line", {"lambda": np.asarray(lambdas)}, values, {"splits": ["train"], "shape": {"train": {"label": label}}}
               ).save(folder / "curves" / "line.npz")
    gallery = {"name": name, "title": name, "panels": ["figures/line.png", "figures/missing.png"], "curve": "curves/line.npz"}
    (folder / "summary.json").write_text(json.dumps({"task": "landscape", "gallery": gallery}))


def test_figures_task_collects_every_finished_recipe_without_recomputing(tmp_path):
    root = tmp_path / "experiments"
    lam = np.linspace(-1, 1, 21)
    fake_recipe(root, "fig_w_peak", lam, 1 - lam**2 + lam**4, "w-peak")
    fake_recipe(root, "fig_v_basin", lam, lam**2, "v-basin")
    (root / "fig_unfinished" / "digits-cnn").mkdir(parents=True)  # no summary yet: not in the gallery
    entries = collect_results(root, "digits-cnn")
    assert [e["gallery"]["name"] for e in entries] == ["fig_v_basin", "fig_w_peak"]
    assert entries[0]["missing"] == ["figures/missing.png"]

    cfg = compose_config(tmp_path, ["task=figures", f"task.experiments_dir={root}", "task.variant=digits-cnn", "logger=none"])
    summary = run_figures(cfg)
    assert summary["experiments"] == ["fig_v_basin", "fig_w_peak"]
    assert summary["missing_panels"] == ["fig_v_basin: figures/missing.png", "fig_w_peak: figures/missing.png"]
    out = tmp_path / "run" / "figures"
    for name in ("gallery.png", "gallery.pdf", "gallery_1d.png", "gallery_1d.pdf"):
        assert (out / name).stat().st_size > 1000


def test_figures_task_says_what_to_run_when_nothing_is_there(tmp_path):
    cfg = compose_config(tmp_path, ["task=figures", f"task.experiments_dir={tmp_path / 'none'}", "task.variant=digits-cnn", "logger=none"])
    with pytest.raises(ValueError, match=r"experiment=glob\(fig_\*\)"):
        run_figures(cfg)


def panel(path: Path, width: float, height: float) -> Path:
    """A PNG tile of the given shape, filled with a plot (not white)."""
    figure, axis = plt.subplots(figsize=(width, height))
    axis.plot([0, 1], [0, 1], linewidth=8)
    axis.set_facecolor("#0072B2")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=60)
    plt.close(figure)
    return path


def test_the_gallery_is_one_figure_whose_rows_fill_its_width(tmp_path):
    from losslandscape.plots.gallery import gallery_rows, plot_gallery

    shapes = [(8.0, 3.2), (4.6, 4.0), (4.6, 4.0), (8.5, 3.3), (5.2, 4.2), (9.6, 4.0), (4.6, 4.0)]  # the recipes' figure sizes
    entries = [{"gallery": {"title": f"recipe {i}"}, "panels": [panel(tmp_path / f"p{i}.png", w, h)]} for i, (w, h) in enumerate(shapes)]
    aspects = [w / h for w, h in shapes]
    rows = gallery_rows(aspects, columns=3)
    assert sorted(i for row in rows for i in row) == list(range(len(shapes))) and all(len(row) <= 4 for row in rows)
    (png, pdf) = plot_gallery(entries, tmp_path / "gallery", 3)
    pixels = np.asarray(plt.imread(png))[..., :3]
    inked = (pixels < 0.95).any(axis=2)  # not white background
    thirds = np.array_split(inked, 3, axis=1)
    assert all(third.mean() > 0.3 for third in thirds), [third.mean() for third in thirds]  # no blank third of the width
    assert pdf.read_bytes().startswith(b"%PDF")


def test_contours_of_a_loss_spanning_decades_get_log_spaced_levels():
    from losslandscape.plots.landscape import contour_levels

    z = np.array([[1e-3, 1e-2], [1.0, 1e2]])
    levels, norm = contour_levels(z, 6, log_scale=False)
    assert norm is not None and np.allclose(np.diff(np.log10(levels)), 1.0)  # 1e-3 ... 1e2, one per decade
    flat = np.array([[1.0, 1.5], [2.0, 3.0]])
    assert contour_levels(flat, 6, log_scale=False) == (6, None)  # less than two decades: linear levels
    assert contour_levels(z, [0.1, 1.0], log_scale=False) == ([0.1, 1.0], None)  # the user's own levels are kept


def test_titles_name_the_model_the_data_and_the_direction():
    from losslandscape.plots.landscape import curve_name
    from losslandscape.plots.style import scan_context

    config = {"model": {"_target_": "losslandscape.models.cnn.SmallCNN"}, "dataset": {"_target_": "losslandscape.data.digits.load_digits"}}
    noise = {"type": "NoiseDirection", "distribution": "gaussian", "normalization": "filter"}
    line = ScanResult("line", "line", {"lambda": np.zeros(3)}, {}, {"config": config, "direction": noise})
    plane = ScanResult("plane", "plane", {"x": np.zeros(3), "y": np.zeros(3)}, {}, {"config": config, "direction": noise})
    assert scan_context(line) == "SmallCNN on digits, filter-normalized Gaussian direction"
    assert scan_context(plane) == "SmallCNN on digits, filter-normalized Gaussian directions"
    signs = {"type": "SignConsistentDirection", "distribution": "gaussian", "normalization": "filter", "ratio": 0.5}
    assert scan_context(ScanResult("line", "line", {"lambda": np.zeros(3)}, {}, {"config": config, "direction": signs})).endswith(
        "sign-consistent Gaussian direction (r = 0.5)")
    assert curve_name(ScanResult("line", "mined03", {}, {}, {})) == "mined run 3"
    assert curve_name(ScanResult("line", "line2", {}, {}, {})) == "direction 2"
