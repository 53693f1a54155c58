"""The report's SeFa direction grids and projections of real images."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from pipeline.params import ReportParams
from pipeline.report.latent_edits import STRENGTHS, render_directions, render_projections
from stylegan.directions import sefa
from stylegan.generate import Sampler
from stylegan.networks_progan import ProGANGenerator
from stylegan.networks_stylegan2 import Generator

PARAMS = ReportParams(grid_seeds=[0, 1, 2, 3], directions=2, psi=0.7)


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 128, "channel_max": 16})  # fmt: skip
    return Sampler(G)


def test_direction_grids_move_each_seed_along_the_top_sefa_directions(sampler, tmp_path):
    figures = render_directions(sampler, PARAMS, tmp_path)
    assert [f.title for f in figures] == ["SeFa direction 0", "SeFa direction 1"]
    grid = np.asarray(PIL.Image.open(figures[0].file))
    assert grid.shape == (4 * 16, len(STRENGTHS) * 16, 3)
    unedited = sampler.generate([0, 1, 2, 3], psi=0.7)  # the middle column: strength 0
    middle = STRENGTHS.index(0.0)
    for row in range(4):
        assert np.array_equal(grid[row * 16 : (row + 1) * 16, middle * 16 : (middle + 1) * 16], unedited[row])
    _, eigenvalues = sefa(sampler.network, 2)
    assert f"({float(eigenvalues[0]):.3g})" in figures[0].caption


def test_projections_show_targets_above_their_reconstructions(sampler, tmp_path):
    real = sampler.generate([7, 8])  # images the generator can reach
    params = PARAMS.model_copy(update={"project_images": 2, "project_steps": 3})
    (figure,) = render_projections(sampler, real, params, tmp_path)
    grid = np.asarray(PIL.Image.open(figure.file))
    assert grid.shape == (2 * 16, 2 * 16, 3) and np.array_equal(grid[:16, :16], real[0])
    assert "PSNR" in figure.caption and "3 steps" in figure.caption


def test_no_latent_figures_without_a_w_space_or_when_switched_off(sampler, tmp_path):
    progan = Sampler(ProGANGenerator(z_dim=8, c_dim=0, img_resolution=8, channel_base=64, channel_max=8))
    assert render_directions(progan, PARAMS, tmp_path) == []
    assert render_projections(progan, np.zeros((1, 8, 8, 3), np.uint8), PARAMS, tmp_path) == []
    assert render_projections(sampler, None, PARAMS.model_copy(update={"project_images": 1}), tmp_path) == []
    assert render_directions(sampler, PARAMS.model_copy(update={"directions": 0}), tmp_path) == []
