"""Figures of the report drawn with matplotlib (Agg, no display): training curves and the label histogram."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from stylegan.files import atomic_path  # noqa: E402

__all__ = ["CURVE_PANELS", "CurvePanel", "Figure", "plot_curves", "plot_label_histogram", "read_curves"]

# Column names the train stage may use for the x axis, in order of preference.
X_COLUMNS = ("kimg", "tick", "step")


@dataclass(frozen=True)
class CurvePanel:
    """One plot of the training curves: the columns it draws (each under any of its aliases)."""

    name: str
    title: str
    ylabel: str
    series: tuple[tuple[str, ...], ...]  # each entry: accepted column names of one line
    log_y: bool = False
    pattern: str | None = None  # also draw every column whose whole name matches this regex


CURVE_PANELS = (
    # `train.metrics` measured on G_ema at snapshots (fid5k_full, kid50k_full, ppl2_wend, ...).
    CurvePanel(
        "training_metrics",
        "Metrics of G_ema during training (lower is better)",
        "value",
        (),
        log_y=True,
        pattern=r"(fid|kid)\d+k(_full)?|ppl\w+",
    ),
    CurvePanel("losses", "Losses", "loss", (("loss_G", "Loss/G/loss"), ("loss_D", "Loss/D/loss"))),
    CurvePanel("r1", "R1 penalty", "penalty", (("r1_penalty", "Loss/r1_penalty"),), log_y=True),
    CurvePanel("path_length", "Path length penalty", "penalty", (("pl_penalty", "Loss/pl_penalty"),)),
    CurvePanel("wgan_gp", "Gradient penalty and drift (WGAN-GP)", "penalty", (("gp_penalty",), ("drift",))),
    CurvePanel("augment", "Augmentation probability p", "p", (("augment_p", "Progress/augment"),)),
    # Progressive growing (ProGAN, StyleGAN v1): the resolution trained and the newest block's weight.
    CurvePanel("growth_resolution", "Growth: resolution", "pixels", (("resolution",),), log_y=True),
    CurvePanel("growth_alpha", "Growth: fade-in alpha (1 = fully grown)", "alpha", (("alpha",),)),
    CurvePanel("speed", "Training speed", "images / s", (("img_s", "img_per_s", "Timing/img_per_sec"),)),
    CurvePanel("sec_per_kimg", "Time per kimg", "s / kimg", (("sec_per_kimg", "Timing/sec_per_kimg"),)),
)


@dataclass(frozen=True)
class Figure:
    """A figure written for the page: its file and a title."""

    file: Path
    title: str


def read_curves(path: Path) -> pd.DataFrame:
    """The per-tick table of the train stage: ``.tsv`` (tabs) or ``.csv`` (commas), one header row."""
    if not path.is_file():
        raise FileNotFoundError(f"training curves not found: {path}")
    kind, sep = ("TSV", "\t") if path.suffix.lower() in (".tsv", ".tab") else ("CSV", ",")
    try:
        table = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable {kind} table: {err}") from None
    return table.apply(pd.to_numeric, errors="coerce")


def _x_axis(table: pd.DataFrame) -> tuple[pd.Series, str]:
    for name in X_COLUMNS:
        if name in table and table[name].notna().any():
            return table[name], name
    return pd.Series(range(len(table)), index=table.index), "row"


def plot_curves(table: pd.DataFrame, out_dir: Path) -> tuple[list[Figure], list[str]]:
    """One PNG per panel of :data:`CURVE_PANELS` that has data other than zeros; columns a panel lacks are
    skipped.

    Returns the figures and the numeric columns of the table that no panel drew.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    x, x_name = _x_axis(table)
    figures, drawn = [], {x_name}
    for panel in CURVE_PANELS:
        lines = []
        for aliases in panel.series:
            column = next((a for a in aliases if a in table and table[a].notna().any()), None)
            if column is not None:
                lines.append(column)
        if panel.pattern:
            lines += [
                c for c in table.columns if re.fullmatch(panel.pattern, str(c)) and table[c].notna().any()
            ]
        if not lines:
            continue
        drawn.update(lines)
        if all(table[column].fillna(0).eq(0).all() for column in lines):
            continue  # e.g. augment_p of a run without augmentation: a flat line at 0 says nothing
        fig, ax = plt.subplots(figsize=(4.8, 2.9), dpi=110, layout="constrained")
        for column in lines:
            values = table[column]
            ax.plot(
                x[values.notna()],
                values.dropna(),
                marker="." if values.notna().sum() < 30 else None,
                label=column,
                linewidth=1.4,
            )
        if panel.log_y and (table[lines].dropna() > 0).all().all():
            ax.set_yscale("log")
        ax.set(title=panel.title, xlabel=x_name, ylabel=panel.ylabel)
        ax.grid(alpha=0.3)
        if len(lines) > 1 or panel.pattern:  # a pattern's columns are named only by the legend
            ax.legend(frameon=False)
        name = f"curves_{panel.name}.png"
        with atomic_path(out_dir / name) as tmp:  # a full disk or a kill leaves no half-written image
            fig.savefig(tmp, format="png")
        plt.close(fig)
        figures.append(Figure(out_dir / name, panel.title))
    numeric = [c for c in table.columns if table[c].notna().any()]
    return figures, [c for c in numeric if c not in drawn]


def plot_label_histogram(counts: Sequence[int], path: Path) -> Figure:
    """A bar chart of images per class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = min(9.0, 3.0 + 0.25 * len(counts))
    fig, ax = plt.subplots(figsize=(width, 2.6), dpi=110, layout="constrained")
    ax.bar(range(len(counts)), counts, color="#4c72b0")
    ax.set(title="Images per class", xlabel="class", ylabel="images")
    if len(counts) <= 30:
        ax.set_xticks(range(len(counts)))
    ax.grid(axis="y", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return Figure(path, "Images per class")
