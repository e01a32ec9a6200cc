"""One self-contained HTML page of a sweep (or of the figure gallery): the jobs' table, their 1D
curves overlaid, their surfaces as rotatable plotly figures, and links to every file.

plotly.js is embedded once in the page's head, so the page opens offline and from any folder;
the figures themselves are JSON in the page. File links are relative to the page, which lies in
the sweep's directory: moving the sweep folder keeps them working.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_path
from ..landscape.scans import ScanResult
from ..tracking.sweep_jobs import Job, flatten, swept_keys, with_scalar_headlines
from .interactive import as_json_grid, loss_name, surface_figure

# the summary's headline numbers, in the table's order: (flattened key pattern, column title)
HEADLINES = (
    (r"train_loss", "train loss"), (r"test_loss", "test loss"),
    (r"train_accuracy", "train acc."), (r"test_accuracy", "test acc."),
    (r"hessian/top_eigenvalue", "top eigenvalue"), (r"hessian/trace", "Hessian trace"),
    (r"(.*/)?(linear_barrier|barrier/\w+|mode_connectivity)", None), (r"mining/success_rate", "mining success"),
)
MAX_CURVE_FIGURES = 12  # a mining ring alone has a dozen rays: a page of every one would bury the comparison
SHAPE_LABEL = re.compile(r"scans/(?P<scan>[^/]+)/shape/(?P<split>[^/]+)/label")
CURVE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")  # Okabe-Ito: colorblind-safe
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85rem; } th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.8rem; } .figure { width: 100%; height: 460px; } .small { color: #666; font-size: 0.8rem; }
ul.files { columns: 3; font-size: 0.8rem; } div.wide { overflow-x: auto; }  /* many headline columns scroll, the page does not */
"""


def headline_numbers(summary: dict[str, Any]) -> dict[str, float]:
    """``{column title: value}`` of the numbers a summary has, in :data:`HEADLINES` order."""
    flat = with_scalar_headlines(flatten(summary))
    numbers = {}
    for pattern, title in HEADLINES:
        for key, value in flat.items():
            if re.fullmatch(pattern, key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                numbers[title or key.replace("/", " ")] = float(value)
    return numbers


def shape_labels(summary: dict[str, Any]) -> dict[str, str]:
    """``{"line (train)": "v-basin", ...}``: every measured curve shape of the job."""
    return {f"{m['scan']} ({m['split']})": str(v) for k, v in flatten(summary).items() if (m := SHAPE_LABEL.fullmatch(k))}


def job_label(job: Job, keys: list[str]) -> str:
    """The job as its swept overrides name it (``seed=1 direction=sign_consistent``), else its number."""
    shown = " ".join(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)
    return shown or f"job {job.name}"


def common_overrides(jobs: list[Job], keys: list[str]) -> str:
    """The overrides every job shares, said once above the table instead of in every row."""
    shared = {k: v for k, v in jobs[0].overrides.items() if k not in keys and all(j.overrides.get(k) == v for j in jobs)}
    return " ".join(f"{k}={v}" for k, v in shared.items()) or "none"


def table_html(jobs: list[Job], keys: list[str]) -> str:
    """One row per job: number, its swept overrides, task, the headline numbers and the shape labels."""
    numbers = [headline_numbers(job.summary) for job in jobs]
    shapes = [shape_labels(job.summary) for job in jobs]
    number_columns = list(dict.fromkeys(c for row in numbers for c in row))
    shape_columns = list(dict.fromkeys(c for row in shapes for c in row))
    head = ["job", *keys, "task", *number_columns, *(f"shape: {c}" for c in shape_columns)]
    rows = []
    for job, found, labels in zip(jobs, numbers, shapes):
        cells = [f"<td><a href='#job-{html.escape(job.name)}'>{html.escape(job.name)}</a></td>"]
        cells += [f"<td>{html.escape(job.overrides.get(k, ''))}</td>" for k in keys]
        cells.append(f"<td>{html.escape(str(job.summary.get('task', 'unfinished')))}</td>")
        cells += [f"<td class='num'>{found[c]:.4g}</td>" if c in found else "<td></td>" for c in number_columns]
        cells += [f"<td>{html.escape(labels.get(c, ''))}</td>" for c in shape_columns]
        rows.append(f"<tr class='job'>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (f"<p class='small'>Every job: <code>{html.escape(common_overrides(jobs, keys))}</code></p>"
            f"<div class='wide'><table id='jobs'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def results_of(job: Job, folder: str) -> list[ScanResult]:
    """The job's finished scans in ``curves/`` or ``surfaces/`` (partial files of a killed scan left out)."""
    results = []
    for path in sorted((job.folder / folder).rglob("*.npz")):  # interpolation curves lie in curves/interpolation/
        try:
            results.append(ScanResult.load(path))
        except (KeyError, ValueError, OSError):  # not a scan result (or a corrupt one): listed as a file, not drawn
            continue
    return results


def curves_by_scan(jobs: list[Job], featured: bool) -> dict[str, list[tuple[Job, ScanResult]]]:
    """``{scan name: [(job, curve), ...]}``; ``featured``: only the curve each figure recipe names in its
    gallery block, all under one name (the gallery's shapes side by side)."""
    by_scan: dict[str, list[tuple[Job, ScanResult]]] = {}
    for job in jobs:
        if featured:
            curve = (job.summary.get("gallery") or {}).get("curve")
            if curve and (job.folder / curve).is_file():
                by_scan.setdefault("gallery", []).append((job, ScanResult.load(job.folder / curve)))
            continue
        for result in results_of(job, "curves"):
            if len(result.axes) == 1:
                by_scan.setdefault(result.name, []).append((job, result))
    return by_scan


def overlaid_curves(jobs: list[Job], keys: list[str], split: str | None, featured: bool = False) -> list[dict[str, Any]]:
    """One plotly figure per 1D scan name (``line``, ``mined0``, ...), one trace per job that has it; the
    :data:`MAX_CURVE_FIGURES` names most jobs share (every curve stays linked under Files)."""
    by_scan = curves_by_scan(jobs, featured)
    shared = sorted(by_scan.items(), key=lambda item: -len(item[1]))[:MAX_CURVE_FIGURES]  # stable: ties keep job order
    figures = []
    for scan, found in shared:
        traces = []
        chosen = split or found[0][1].provenance.get("splits", ["train"])[0]
        for index, (job, result) in enumerate(found):
            if f"{chosen}_loss" not in result.values:
                continue
            (axis, xs), = result.axes.items()
            traces.append({"type": "scatter", "mode": "lines", "name": job_label(job, keys), "x": xs.tolist(),
                           "y": as_json_grid(np.asarray(result.values[f"{chosen}_loss"])),
                           "line": {"color": CURVE_COLORS[index % len(CURVE_COLORS)]}})
        name = loss_name(found[0][1])
        axis_title = "t" if found[0][1].kind == "interpolation" else "λ"
        layout = {"title": {"text": f"{scan}: {chosen} {name} along each job's direction"},
                  "xaxis": {"title": {"text": axis_title}},
                  "yaxis": {"title": {"text": name}, **({"type": "log"} if featured else {})},  # the shapes' losses span decades
                  "legend": {"orientation": "h", "y": -0.2}, "margin": {"t": 50}}
        figures.append({"id": f"curves-{scan}", "data": traces, "layout": layout})
    return figures


def surface_figures(jobs: list[Job], keys: list[str]) -> list[dict[str, Any]]:
    """Every job's plane scans as the rotatable figures of :mod:`.interactive`, as plotly JSON."""
    figures = []
    for job in jobs:
        for result in results_of(job, "surfaces"):
            if set(result.axes) != {"x", "y"}:
                continue
            figure = surface_figure(result)
            figure.update_layout(title=f"{job_label(job, keys)}: {result.name}",
                                 legend={"orientation": "h", "y": -0.05})  # below the plot: clear of the colour bar
            figures.append({"id": f"surface-{job.name}-{result.name}", **json.loads(figure.to_json())})
    return figures


def files_html(jobs: list[Job], page_dir: Path) -> str:
    """Per job: links to all its files, relative to the page."""
    sections = []
    for job in jobs:
        links = "".join(f"<li><a href='{html.escape(_relative(job.folder / p, page_dir))}'>{html.escape(str(p))}</a></li>"
                        for p in job.files())
        sections.append(f"<h3 id='job-{html.escape(job.name)}'>job {html.escape(job.name)}</h3>"
                        f"<ul class='files'>{links or '<li>no files</li>'}</ul>")
    return "".join(sections)


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start).replace(os.sep, "/")


def plotly_script() -> str:
    """plotly.js itself (from the plotly package: no network, no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_html(figure: dict[str, Any]) -> str:
    spec = json.dumps({"data": figure["data"], "layout": figure["layout"]}).replace("</", "<\\/")  # never ends the script early
    return (f"<div class='figure' id='{figure['id']}'></div>"
            f"<script>(function(){{var f={spec};Plotly.newPlot('{figure['id']}',f.data,f.layout,"
            f"{{responsive:true,displaylogo:false}});}})();</script>")


def write_report(jobs: list[Job], path: str | Path, title: str, split: str | None = None, gallery: bool = False) -> dict[str, Any]:
    """Write the page to ``path``; returns what is on it (rows, figure ids) for the task's summary.
    ``gallery``: the jobs are figure recipes, whose featured curves are overlaid in one figure."""
    path = Path(path)
    keys = swept_keys(jobs)
    curves, surfaces = overlaid_curves(jobs, keys, split, featured=gallery), surface_figures(jobs, keys)
    swept = ", ".join(keys) or "nothing (every job has the same overrides)"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='small'>{len(jobs)} jobs, swept: {html.escape(swept)}; written by losslandscape task=report.</p>",
            "<h2>Jobs</h2>", table_html(jobs, keys),
            "<h2>1D curves overlaid</h2>", "".join(map(figure_html, curves)) or "<p>No 1D scans in these jobs.</p>",
            "<h2>Surfaces</h2>", "".join(map(figure_html, surfaces)) or "<p>No 2D scans in these jobs.</p>",
            "<h2>Files</h2>", files_html(jobs, path.parent)]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{plotly_script()}</script></head><body>{''.join(body)}</body></html>")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return {"rows": len(jobs), "curves": [f["id"] for f in curves], "surfaces": [f["id"] for f in surfaces]}
