"""The generator's figures on the report: sample grids, truncation sweep, style mixing, interpolation.

Cells are stored at most :data:`MAX_CELL` pixels per side (a 1024 px network's grids are downscaled 4x
with Lanczos, so the report stays a few MB), and small networks are shown enlarged with visible pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from pipeline.params import ReportParams
from stylegan.files import atomic_path
from stylegan.generate import Sampler, image_grid, style_layers, to_pil

__all__ = ["COMPARISON_SIZE", "MAX_CELL", "SampleFigure", "render_comparison", "render_samples"]

STYLE_GROUPS = ("coarse", "middle", "fine")
SWEEP_ROWS = 6  # the first seeds of grid_seeds form the rows of the truncation sweep
MAX_CELL = 256
INTERPOLATION_FILE = "interpolation.webp"
INPUT_TRANSFORM_FILE = "input_transform.webp"
COMPARISON_SIZE = 8  # images per row of the real / generated comparison


@dataclass(frozen=True)
class SampleFigure:
    file: Path
    title: str
    caption: str
    scale: int  # display enlargement: small images are shown with visible pixels


def _seeds_text(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _layers_text(layers: list[int]) -> str:
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"


class _Figures:
    """Saves figures into one folder, each cell at most MAX_CELL pixels, and keeps them in page order."""

    def __init__(self, out_dir: Path, resolution: int) -> None:
        self.out_dir = out_dir
        self.cell = min(resolution, MAX_CELL)
        self.shrink = resolution // self.cell
        self.size_note = f" Shown at {self.cell} px, downscaled from {resolution}." if self.shrink > 1 else ""
        self.figures: list[SampleFigure] = []

    def scale(self, minimum: int) -> int:
        return max(1, min(8, minimum // self.cell))

    def add(self, image: PIL.Image.Image, name: str, title: str, caption: str) -> None:
        if self.shrink > 1:
            image = image.resize(
                (image.width // self.shrink, image.height // self.shrink), PIL.Image.Resampling.LANCZOS
            )
        file = self.out_dir / name
        with atomic_path(file) as tmp:  # a full disk or a kill leaves no half-written image
            image.save(tmp, format=PIL.Image.registered_extensions()[file.suffix.lower()])
        self.figures.append(SampleFigure(file, title, caption + self.size_note, self.scale(128)))


def render_comparison(
    G: Sampler,
    real: np.ndarray | None,
    real_labels: Sequence[int] | None,
    params: ReportParams,
    out_dir: Path,
) -> list[SampleFigure]:
    """One row of training images (uint8 ``[N, H, W, C]``, when given) and one row of generated images,
    untruncated, from the first seeds of ``grid_seeds``; a conditional network draws the real row's classes.
    The rows show as many images as the shorter of the two has."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out_dir, G.resolution)
    seeds = list(params.grid_seeds[:COMPARISON_SIZE])
    if real is not None and len(real):
        real = np.asarray(real)[: len(seeds)]
        seeds = seeds[: len(real)]
        if real.shape[1:3] != (G.resolution, G.resolution):
            raise ValueError(
                f"real images are {real.shape[2]}x{real.shape[1]}, the generator's {G.resolution} px"
            )
        figures.add(
            image_grid(real, len(real)),
            "real.png",
            "Training images",
            f"The first {len(real)} images of the data set.",
        )
    classes = None
    if G.c_dim:
        labels = list(real_labels or [])[: len(seeds)]
        classes = labels if len(labels) == len(seeds) else [i % G.c_dim for i in range(len(seeds))]
    class_note = (
        f" Classes {_seeds_text(classes)}, as the training images above." if classes and real_labels else ""
    )
    figures.add(
        image_grid(G.generate(seeds, psi=1.0, class_idx=classes), len(seeds)),
        "generated.png",
        "Generated images",
        f"Seeds {_seeds_text(seeds)}, ψ = 1 (no truncation).{class_note}",
    )
    return figures.figures


def render_samples(G: Sampler, params: ReportParams, out_dir: Path) -> list[SampleFigure]:
    """Write every sample figure into ``out_dir``; return them in page order.

    A conditional network draws the sample grids with classes cycling over the seeds and every other
    figure for class 0. A network without a W space (ProGAN) gets no truncation or style-mixing figures.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out_dir, G.resolution)
    conditional = G.c_dim > 0
    grid_classes = [i % G.c_dim for i in range(len(params.grid_seeds))] if conditional else None
    one_class = 0 if conditional else None
    class_note = " Classes cycle 0, 1, 2, ... over the seeds." if conditional else ""
    other_class_note = " Class 0." if conditional else ""
    cols = min(len(params.grid_seeds), max(4, math.ceil(math.sqrt(2 * len(params.grid_seeds)))))

    for psi in dict.fromkeys([1.0, params.psi] if G.has_w_space else [1.0]):
        grid = image_grid(G.generate(params.grid_seeds, psi=psi, class_idx=grid_classes), cols)
        what = "no truncation" if psi == 1 else "truncated toward the W average"
        figures.add(
            grid,
            f"samples_psi{psi:g}.png",
            f"Uncurated samples, ψ = {psi:g}",
            f"Seeds {_seeds_text(params.grid_seeds)} in reading order; {what}.{class_note}",
        )

    if G.has_w_space:  # truncation and style mixing act on ws
        sweep_seeds = params.grid_seeds[:SWEEP_ROWS]
        psis = ", ".join(f"{psi:g}" for psi in params.truncation_sweep)
        figures.add(
            G.truncation_sweep(sweep_seeds, params.truncation_sweep, class_idx=one_class),
            "truncation_sweep.png",
            "Truncation sweep",
            f"Rows: seeds {_seeds_text(sweep_seeds)}. Columns: ψ = {psis}; ψ = 0 is the W average itself, "
            f"1 is no truncation, values outside [0, 1] extrapolate.{other_class_note}",
        )

        for group in STYLE_GROUPS:
            layers = style_layers(group, G.num_ws)
            figures.add(
                G.style_mixing_grid(
                    params.mixing_rows, params.mixing_cols, group, params.psi, class_idx=one_class
                ),
                f"style_mixing_{group}.png",
                f"Style mixing: {group} styles",
                f"Top row: seeds {_seeds_text(params.mixing_cols)}; left column: seeds "
                f"{_seeds_text(params.mixing_rows)}. Each cell keeps its row's ws and takes "
                f"{_layers_text(layers)} (of {G.num_ws}) from its column; ψ = {params.psi:g}."
                f"{other_class_note}",
            )

    psi_of_walk = params.psi if G.has_w_space else 1.0
    file = out_dir / INTERPOLATION_FILE
    G.interpolate(
        params.interpolation_seeds,
        file,
        params.interpolation_frames,
        space="z",
        psi=psi_of_walk,
        class_idx=one_class,
        size=figures.cell,
    )
    total = len(params.interpolation_seeds) * params.interpolation_frames
    figures.figures.append(
        SampleFigure(
            file,
            "Latent interpolation",
            f"A loop through seeds {_seeds_text(params.interpolation_seeds)} and back to the first: "
            f"{params.interpolation_frames} frames per transition, {total} in all; spherical interpolation "
            f"in z, ψ = {psi_of_walk:g}.{other_class_note}{figures.size_note}",
            figures.scale(256),
        )
    )
    if G.has_input_transform:  # StyleGAN3: the "texture sticking" test of the paper
        seed = params.interpolation_seeds[0]
        frames = G.input_transform_frames(seed, frames=2 * params.interpolation_frames, psi=params.psi,
                                          class_idx=one_class)  # fmt: skip
        file = out_dir / INPUT_TRANSFORM_FILE
        pil = [to_pil(frame) for frame in frames]
        if figures.shrink > 1:
            pil = [frame.resize((figures.cell, figures.cell), PIL.Image.Resampling.LANCZOS) for frame in pil]
        with atomic_path(file) as tmp:
            pil[0].save(tmp, "WEBP", save_all=True, append_images=pil[1:], duration=80, loop=0, quality=90)
        figures.figures.append(
            SampleFigure(
                file,
                "Moving the input (texture sticking)",
                f"Seed {seed}, ψ = {params.psi:g}: the Fourier-feature input moves along a circle of a "
                "quarter image and rotates by up to ±15°. In an alias-free generator details move with the "
                f"content instead of sticking to pixel positions.{other_class_note}{figures.size_note}",
                figures.scale(256),
            )
        )
    return figures.figures
