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
