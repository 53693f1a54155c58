"""The report stage's page: ``index.html`` plus its images, in one folder that opens offline.

Every input may be missing (None, or a path to a file that was not produced); the page then says what is
missing instead of failing, so a partial pipeline still gets a report. Inputs that exist but are broken
raise an error naming the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import PIL.Image

from pipeline.files import file_digest
from pipeline.params import ReportParams
from stylegan.files import atomic_write_text
from stylegan.generate import Sampler, load_w_avg

from . import latent_edits, plots, samples, tables

__all__ = ["IMAGES_DIR", "PLOTS_DIR", "render_report"]

TEMPLATES = Path(__file__).parent / "templates"
IMAGES_DIR = "images"  # generator figures, beside index.html
PLOTS_DIR = "plots"  # matplotlib figures, beside index.html


@dataclass(frozen=True)
class PageImage:
    """An image as the template places it: relative source, displayed size and text."""

    src: str
    width: int
    height: int
    title: str
    caption: str = ""
    pixelated: bool = False


def _page_image(file: Path, root: Path, title: str, caption: str = "", scale: int = 1) -> PageImage:
    with PIL.Image.open(file) as image:
        width, height = image.size
    src = file.relative_to(root).as_posix()
    return PageImage(src, width * scale, height * scale, title, caption, pixelated=scale > 1)


def _present(path: str | Path | None) -> Path | None:
    return Path(path) if path is not None and Path(path).is_file() else None


def _missing(what: str, path: str | Path | None) -> str:
    return f"No {what}: no file was given." if path is None else f"No {what}: {path} does not exist."


def _format_count(count: int) -> str:
    return f"{count / 1e6:.2f} M" if count >= 1e6 else f"{count:,}"


def _generator_section(
    generator_path: str | Path | None,
    w_avg_path: str | Path | None,
    params: ReportParams,
    root: Path,
    device: str,
    real_images: np.ndarray | None = None,
    real_labels: Sequence[int] | None = None,
    network_parameters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    network = _present(generator_path)
    if network is None:
        return {"missing": _missing("generator", generator_path)}
    w_avg = _present(w_avg_path)
    G = Sampler.load(network, device)
    if w_avg is not None and G.has_w_space:
        G = Sampler(G.network, load_w_avg(w_avg), device)
    compared = samples.render_comparison(G, real_images, real_labels, params, root / IMAGES_DIR)
    comparison = [_page_image(f.file, root, f.title, f.caption, f.scale) for f in compared]
    figures = samples.render_samples(G, params, root / IMAGES_DIR)
    figures += latent_edits.render_directions(G, params, root / IMAGES_DIR)
    figures += latent_edits.render_projections(G, real_images, params, root / IMAGES_DIR)
    images = [_page_image(f.file, root, f.title, f.caption, f.scale) for f in figures]
    sizes = dict(network_parameters or {})
    sizes.setdefault("G", sum(p.numel() for p in G.network.parameters()))
    w_avg_note = None
    if not G.has_w_space:
        w_avg = None
        w_avg_note = (
            f"{type(G.network).__name__} has no W space (no mapping network): no truncation, style mixing "
            "or W average; samples and the interpolation are drawn in z."
        )
    elif w_avg is None:
        w_avg_note = _missing("separate W average", w_avg_path) + " Truncation uses the training average."
    return {
        "missing": None,
        "file": str(generator_path),
        "sha256": file_digest(network),
        "w_avg": str(w_avg_path) if w_avg else None,
        "w_avg_note": w_avg_note,
        "comparison": comparison,
        "real_note": None if real_images is not None and len(real_images) else "No training images given.",
        "parameters": {f"{name} parameters": _format_count(count) for name, count in sizes.items()},
        "shape": {
            "resolution": f"{G.resolution}×{G.resolution}",
            "z_dim": G.z_dim,
            "w_dim": G.w_dim if G.has_w_space else "none (no W space)",
            "num_ws": G.num_ws if G.has_w_space else "none",
            "classes": G.c_dim or "unconditional",
        },
        "images": images,
    }


def _curves_section(curves_path: str | Path | None, root: Path) -> dict[str, Any]:
    curves = _present(curves_path)
    if curves is None:
        return {"missing": _missing("training curves", curves_path)}
    table = plots.read_curves(curves)
    figures, unplotted = plots.plot_curves(table, root / PLOTS_DIR)
    note = None if figures else f"{curves} has none of the columns the report plots: {list(table.columns)}"
    return {
        "missing": note,
        "file": str(curves_path),
        "ticks": len(table),
        "images": [_page_image(f.file, root, f.title) for f in figures],
        "unplotted": unplotted,
    }


def _metrics_section(metrics_path: str | Path | None, previous_runs: Sequence[Mapping[str, Any]]) -> dict:
    path = _present(metrics_path)
    if path is None:
        return {"missing": _missing("metrics", metrics_path)}
    metrics = tables.load_metrics(path)
    return {
        "missing": None if metrics else f"{path} lists no metrics.",
        "file": str(metrics_path),
        "runs": ["this run", *(str(run.get("name", f"run {i + 1}")) for i, run in enumerate(previous_runs))],
        "rows": tables.metric_rows(metrics, previous_runs),
        "provenance": tables.provenance_rows(metrics),
        # Metrics computed on fewer images than their definition's (fid300_full is fid50k_full on 300): why
        # their numbers are not comparable with published ones.
        "notes": [record["note"] for record in metrics.values() if record.get("note")],
    }


def _dataset_section(
    dataset_stats: Mapping[str, Any] | None, skipped_summary: Mapping[str, int] | None, root: Path
) -> dict:
    section: dict[str, Any] = {"missing": None if dataset_stats else "No dataset statistics were given."}
    if dataset_stats:
        section["summary"], section["channels"] = tables.dataset_rows(dataset_stats)
        histogram = dataset_stats.get("label_histogram")
        if histogram and len(histogram) > 1:
            figure = plots.plot_label_histogram(histogram, root / PLOTS_DIR / "labels.png")
            section["histogram"] = _page_image(figure.file, root, figure.title)
    section["skipped"] = None if skipped_summary is None else tables.skipped_rows(skipped_summary)
    section["skipped_total"] = sum((skipped_summary or {}).values())
    return section


def render_report(
    out_dir: str | Path,
    *,
    report_params: ReportParams,
    generator_path: str | Path | None = None,
    w_avg_path: str | Path | None = None,
    curves_path: str | Path | None = None,
    metrics_path: str | Path | None = None,
    previous_runs: Sequence[Mapping[str, Any]] = (),
    params_diff: Sequence[tuple[str, Any, Any]] = (),
    dataset_stats: Mapping[str, Any] | None = None,
    skipped_summary: Mapping[str, int] | None = None,
    stage_timings: Mapping[str, float] | None = None,
    hardware: Mapping[str, str] | None = None,
    title: str = "StyleGAN report",
    device: str = "cpu",
    real_images: np.ndarray | None = None,
    real_labels: Sequence[int] | None = None,
    network_parameters: Mapping[str, int] | None = None,
) -> Path:
    """Write ``out_dir/index.html`` with its images in ``out_dir/images`` and ``out_dir/plots``.

    generator_path: the generator (``.safetensors`` or official ``.npz``); w_avg_path: the ``w_avg``
        stage's file, used as the centre of truncation.
    curves_path: per-tick training values, ``.tsv`` or ``.csv`` (see :data:`plots.CURVE_PANELS`).
    metrics_path: the evaluate stage's JSON ``{metric: {value, available, reason, extractor, ...}}``.
    previous_runs: ``[{"name": str, "metrics": {metric: record or number}}]``, earlier runs on the same
        data (DVC experiments, MLflow runs), shown beside this run's metrics.
    params_diff: ``(dotted key, default, value)`` of every param that differs from the default.
    dataset_stats: the shards' ``stats.json``; skipped_summary: skipped inputs per reason.
    stage_timings: seconds per stage, in DAG order; hardware: label -> text (see ``describe_hardware``).
    real_images: training images, uint8 ``[N, H, W, C]``, shown in a row above a row of generated ones (with
        ``real_labels``, their classes, a conditional generator draws the same classes).
    network_parameters: ``{"G": count, "D": count}`` from training (G's is counted here when absent).

    Returns the path of ``index.html``. Figures of an earlier report in the same folder are replaced.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for folder in (IMAGES_DIR, PLOTS_DIR):
        shutil.rmtree(root / folder, ignore_errors=True)

    context = {
        "title": title,
        "params": report_params,
        "generator": _generator_section(
            generator_path,
            w_avg_path,
            report_params,
            root,
            device,
            real_images,
            real_labels,
            network_parameters,
        ),
        "curves": _curves_section(curves_path, root),
        "metrics": _metrics_section(metrics_path, previous_runs),
        "params_diff": [(k, tables.format_param(d), tables.format_param(v)) for k, d, v in params_diff],
        "dataset": _dataset_section(dataset_stats, skipped_summary, root),
        "timings": None if stage_timings is None else tables.timing_rows(stage_timings),
        "total_time": None if not stage_timings else tables.format_duration(sum(stage_timings.values())),
        "hardware": hardware,
    }
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["value"] = tables.format_value
    html = environment.get_template("index.html.j2").render(context)
    index = root / "index.html"
    atomic_write_text(index, html)
    return index
