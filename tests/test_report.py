"""task=report: one HTML page of a real sweep, opened in a real headless Chromium (Debian's package).

The browser is started by the test (``chromium --headless``): the page must load without console
messages, every plotly figure must render (its SVG layer, and a WebGL canvas for surfaces), the
screenshot must not be blank, and the table must have one row per job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import compose_config
from sweep_fixture import JOBS, tiny_sweep  # noqa: F401  (the session fixture)
from losslandscape.tasks.report import run_report
from losslandscape.tracking.sweep_jobs import sweep_jobs

# one pytest-xdist worker runs every test of the sweep, so the sweep itself runs once
pytestmark = pytest.mark.xdist_group("tiny_sweep")

# Chromium's own performance hint for plotly's WebGL readback: an advice to the page's author, not an error of the page
BROWSER_ADVICE = re.compile(r"Canvas2D: Multiple readback operations")
CONSOLE = re.compile(r":CONSOLE[^\]]*\] \"(?P<message>.*)\", source: (?P<source>\S+)")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
    return found


def browse(page: Path, *mode: str) -> subprocess.CompletedProcess:
    """Load ``page`` in a headless Chromium, scripts run, then ``mode`` (dump the DOM or take a screenshot)."""
    flags = ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
             "--enable-unsafe-swiftshader", "--use-angle=swiftshader",  # software WebGL: plotly's 3D surfaces on a machine without GPU
             "--virtual-time-budget=15000", "--window-size=1280,2400", f"--user-data-dir={page.parent / '.chromium'}"]
    return subprocess.run([chromium(), *flags, *mode, page.as_uri()], capture_output=True, text=True, timeout=300)


def console_messages(stderr: str) -> list[str]:
    return [m["message"] for m in CONSOLE.finditer(stderr) if not BROWSER_ADVICE.search(m["message"])]


class Tables(HTMLParser):
    """The rows of ``<table id=jobs>`` and the plotly figure divs of a page (before or after its scripts ran)."""

    def __init__(self):
        super().__init__()
        self.rows, self.figures, self.rendered, self.canvases, self._in_row = [], [], set(), set(), None
        self._figure = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "div" and "figure" in classes:
            self._figure = attrs["id"]
            self.figures.append(attrs["id"])
        if self._figure and tag == "svg" and "main-svg" in classes:
            self.rendered.add(self._figure)
        if self._figure and tag == "canvas":
            self.canvases.add(self._figure)
        if tag == "tr" and "job" in classes:
            self._in_row = []
            self.rows.append(self._in_row)
        if tag == "script":
            self._figure = None

    def handle_data(self, data):
        if self._in_row is not None and data.strip():
            self._in_row.append(data.strip())

    def handle_endtag(self, tag):
        if tag == "tr":
            self._in_row = None


def parsed(text: str) -> Tables:
    tables = Tables()
    tables.feed(text)
    return tables


def report_of(tmp_path, *overrides) -> dict:
    # compose() has no Hydra runtime for the ${hydra:runtime.choices...} of task.variant: the tests name it
    return run_report(compose_config(tmp_path, ["task=report", "logger=none", "task.variant=digits-cnn", *overrides]))


def test_the_report_has_one_row_per_job_with_its_overrides_numbers_and_shapes(tmp_path, tiny_sweep):
    summary = report_of(tmp_path, f"task.sweep_dir={tiny_sweep}")
    page = Path(summary["page"])
    assert page == tiny_sweep / "report.html" and summary["rows"] == JOBS
    text = page.read_text()
    tables = parsed(text)
    jobs = sweep_jobs(tiny_sweep)
    assert len(tables.rows) == JOBS
    for row, job in zip(tables.rows, jobs):
        assert row[0] == job.name and row[1:4] == [job.overrides["task"], job.overrides["seed"], job.overrides["direction"]]
        if job.overrides["task"] == "landscape":  # centre losses, accuracies and the measured shapes
            assert f"{job.summary['train_loss']:.4g}" in row and job.summary["scans"]["line"]["shape"]["train"]["label"] in row
        elif job.overrides["task"] == "hessian":
            assert f"{max(job.summary['hessian']['top_eigenvalues']):.4g}" in row
        else:  # the barrier of the interpolation
            assert f"{job.summary['pairs']['init_to_final']['barrier']['train_loss']:.4g}" in row
    assert summary["curves"] == ["curves-line", "curves-init_to_final"] and len(summary["surfaces"]) == 4  # 4 landscape jobs' planes
    for job in jobs:  # a link to every file of every job, relative to the page
        for path in job.files():
            assert f"href='{job.name}/{path.as_posix()}'" in text and (tiny_sweep / job.name / path).is_file()
    assert "<script src=" not in text and "Plotly.newPlot" in text  # plotly.js inside, no CDN: opens offline


def test_the_report_renders_in_a_headless_chromium(tmp_path, tiny_sweep):
    page = Path(report_of(tmp_path, f"task.sweep_dir={tiny_sweep}")["page"])
    dom = browse(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    after = parsed(dom.stdout)
    assert len(after.rows) == JOBS
    assert len(after.figures) == 6 and after.rendered == set(after.figures)  # plotly drew every figure
    assert {f for f in after.figures if f.startswith("surface-")} <= after.canvases  # surfaces through WebGL
    shot = tmp_path / "report.png"
    taken = browse(page, f"--screenshot={shot}")
    assert taken.returncode == 0 and console_messages(taken.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (2400, 1280)
    inked = (np.abs(pixels - 255).sum(axis=2) > 30).mean()  # share of pixels that are not white background
    colours = len(np.unique(pixels.reshape(-1, 3) // 8, axis=0))  # colour maps and curves, not just text
    assert inked > 0.05 and colours > 200, (inked, colours)


def test_the_console_check_sees_a_broken_page(tmp_path):
    """The browser check above is real: a page that logs an error and throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('broken figure'); notDefined();</script></body></html>")
    messages = console_messages(browse(page, "--dump-dom").stderr)
    assert "broken figure" in messages and any("Uncaught ReferenceError" in m for m in messages)


def test_a_gallery_report_has_one_row_per_recipe(tmp_path, tiny_sweep):
    experiments = tmp_path / "experiments"
    for recipe, job in (("fig_v_basin", "0"), ("fig_sign", "1")):  # two finished results laid out as recipes write them
        folder = experiments / recipe / "digits-cnn"
        shutil.copytree(tiny_sweep / job, folder, ignore=shutil.ignore_patterns("wandb"))
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "gallery": {"name": recipe, "curve": "curves/line.npz"}}))
    summary = report_of(tmp_path, "task.source=gallery", f"task.experiments_dir={experiments}", "task.variant=digits-cnn")
    page = Path(summary["page"])
    assert page == experiments / "report-digits-cnn.html"
    tables = parsed(page.read_text())
    assert [row[:2] for row in tables.rows] == [["fig_sign", "fig_sign"], ["fig_v_basin", "fig_v_basin"]]
    assert summary["curves"] == ["curves-gallery"]  # each recipe's featured curve, overlaid in one figure


@pytest.mark.parametrize("overrides, message", [
    (["task.source=nowhere"], "task.source"),
    (["task.sweep_dir=/no/such/sweep"], "no such folder"),
])
def test_bad_report_settings_name_what_is_wrong(tmp_path, overrides, message):
    with pytest.raises(Exception, match=message):
        report_of(tmp_path, *overrides)
