"""The report's latent-space figures: the top SeFa directions on a few seeds, and projections of a few
real training images into W (both need a W space; a generator without one gets neither)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.params import ReportParams
from stylegan.directions import edit, sefa
from stylegan.generate import Sampler, image_grid
from stylegan.projector import project

from .samples import SampleFigure

DIRECTION_SEEDS = 4  # rows of each direction's grid: the first grid seeds
STRENGTHS = (-3.0, -1.5, 0.0, 1.5, 3.0)  # columns, in W units along a unit direction


def render_directions(G: Sampler, params: ReportParams, out_dir: Path) -> list[SampleFigure]:
    """One grid per top SeFa direction: rows are seeds, columns move along the direction (0 = unedited)."""
    if params.directions == 0 or not G.has_w_space:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    directions, eigenvalues = sefa(G.network, params.directions)
    seeds = list(params.grid_seeds[:DIRECTION_SEEDS])
    classes = [i % G.c_dim for i in range(len(seeds))] if G.c_dim else None
    ws = G.map(G.latents(seeds), params.psi, class_idx=classes)
    figures = []
    for k, (direction, value) in enumerate(zip(directions, eigenvalues, strict=True)):
        moved = torch.stack([edit(ws, direction.to(ws), s) for s in STRENGTHS], dim=1)
        grid = image_grid(G.synthesize(moved.flatten(0, 1)), cols=len(STRENGTHS))
        file = out_dir / f"sefa_direction_{k}.png"
        grid.save(file)
        figures.append(
            SampleFigure(
                file,
                f"SeFa direction {k}",
                f"Rows: seeds {', '.join(map(str, seeds))} at ψ = {params.psi:g}. Columns: moved by "
                f"{', '.join(f'{s:g}' for s in STRENGTHS)} along the direction with the {_ordinal(k + 1)} "
                f"largest eigenvalue ({float(value):.3g}) of the style weights (closed form, no labels). "
                f"`python -m stylegan edit --direction sefa:{k}` draws more.",
                max(1, min(8, 128 // G.resolution)),
            )
        )
    return figures


def render_projections(
    G: Sampler, real: np.ndarray | None, params: ReportParams, out_dir: Path, seed: int = 0
) -> list[SampleFigure]:
    """Targets from the training set above their projections into W (``params.project_images`` of them,
    ``params.project_steps`` steps each), with each projection's PSNR and the distance used."""
    if params.project_images == 0 or not G.has_w_space or real is None or len(real) == 0:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = real[: params.project_images]
    results = [
        project(G.network, target, num_steps=params.project_steps, seed=seed, progress=False)
        for target in targets
    ]
    rows = np.concatenate([targets, np.stack([r.image for r in results])])
    file = out_dir / "projections.png"
    image_grid(rows, cols=len(targets)).save(file)
    psnrs = ", ".join(f"{r.psnr:.1f}" for r in results)
    return [
        SampleFigure(
            file,
            "Projection of real images",
            f"Top: training images. Bottom: their projections into W ({params.project_steps} steps of "
            f"NVIDIA's method, distance {results[0].distance}); PSNR {psnrs} dB. "
            "`python -m stylegan project` runs more steps on any photo.",
            max(1, min(8, 128 // G.resolution)),
        )
    ]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
