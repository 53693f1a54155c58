"""Equivariance metrics (EQ-T, EQ-T_frac, EQ-R) on generators whose equivariance is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from stylegan.metrics.equivariance import (
    eqr50k,
    eqt50k_frac,
    eqt50k_int,
    equivariance_psnrs,
    fractional_pseudo_rotation,
    fractional_rotation,
    fractional_translation,
    integer_translation,
)
from stylegan.networks_stylegan2 import Generator
from stylegan.networks_stylegan3 import StyleGAN3Generator

RESOLUTION = 32


class PatternInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("transform", torch.eye(3))


class PatternSynthesis(nn.Module):
    """Renders, per sample, a sum of low-frequency sinusoids of the image coordinates ``g`` (in image
    widths, pixel centres) mapped by ``transform``: ``img(g) = pattern(transform @ g)``, the
    convention of StyleGAN3's Fourier features. With ``follow_transform=False`` the image ignores
    ``transform`` and cannot follow any translation or rotation."""

    calls: list[tuple[int, ...]] = []  # shapes of rendered batches, shared by deep copies

    def __init__(self, follow_transform: bool) -> None:
        super().__init__()
        self.follow_transform = follow_transform
        self.input = PatternInput()
        angles = torch.arange(5) * (2 * math.pi / 5)
        self.register_buffer("freqs", torch.stack([angles.cos(), angles.sin()], dim=1) * 2.5)  # cycles/image

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False) -> torch.Tensor:
        del noise_mode, force_fp32
        n = ws.shape[0]
        coords = (torch.arange(RESOLUTION, dtype=torch.float32) + 0.5) / RESOLUTION - 0.5
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        g = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)  # [H, W, 3]
        if self.follow_transform:
            g = g @ self.input.transform.t()
        phases = ws[:, 0, :5]  # [N, 5]
        x = g[None, :, :, None, :2] @ self.freqs.t()[None, None, None]  # [1, H, W, 1, 5]
        img = torch.sin(2 * math.pi * (x[..., 0, :] + phases[:, None, None, :])).mean(dim=-1)  # [N, H, W]
        PatternSynthesis.calls.append(tuple(ws.shape))
        return img[:, None].expand(n, 3, RESOLUTION, RESOLUTION)


class PatternGenerator(nn.Module):
    z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels = 8, 0, 8, 1, RESOLUTION, 3

    def __init__(self, follow_transform: bool = True) -> None:
        super().__init__()
        self.synthesis = PatternSynthesis(follow_transform)

    def mapping(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return z[:, None, :]


def psnrs(G: nn.Module, num_samples: int = 4, **kwargs) -> dict[str, float]:
    return equivariance_psnrs(G, num_samples, batch_size=4, seed=1, progress=False, **kwargs)


def test_equivariant_pattern_scores_high_and_static_pattern_low():
    equivariant, static = psnrs(PatternGenerator(True)), psnrs(PatternGenerator(False))
    assert equivariant["eqt_int"] > 100  # the same samples up to float rounding (inf when exact)
    assert equivariant["eqt_frac"] > 50 and equivariant["eqr"] > 50  # interpolation error only
    assert max(static.values()) < 20


def test_identity_transformations_give_infinite_psnr():
    G = PatternGenerator(False)
    result = psnrs(G, translate_max=0.0, kinds=("eqt_int",))
    assert result == {"eqt_int": math.inf}


def test_batch_and_seed_semantics():
    PatternSynthesis.calls.clear()
    first = eqt50k_frac(PatternGenerator(), num_samples=5, batch_size=4, seed=3, progress=False)
    # Batches are full: ceil(5 / 4) = 2 batches, each rendering the reference and the transformed images.
    assert PatternSynthesis.calls == [(4, 1, 8)] * 4
    assert eqt50k_frac(PatternGenerator(), num_samples=5, batch_size=4, seed=3, progress=False) == first
    assert eqt50k_frac(PatternGenerator(), num_samples=5, batch_size=4, seed=4, progress=False) != first


def test_stylegan3_generator_end_to_end():
    torch.manual_seed(0)
    G = StyleGAN3Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8,
        num_layers=4, num_critical=1, margin_size=4,
    )  # fmt: skip
    transform = G.synthesis.input.transform.clone()
    for metric in (eqt50k_int, eqt50k_frac, eqr50k):
        value = metric(G, num_samples=2, batch_size=2, progress=False)
        assert np.isfinite(value) and value > 0
    assert torch.equal(G.synthesis.input.transform, transform)  # measured on a copy


def test_generators_without_input_transform_are_refused():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3)
    for metric in (eqt50k_int, eqt50k_frac, eqr50k):
        with pytest.raises(ValueError, match="StyleGAN3 generators only"):
            metric(G, num_samples=1)


def test_conditional_generators_need_labels():
    G = StyleGAN3Generator(
        z_dim=8, c_dim=2, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8,
        num_layers=4, num_critical=1, margin_size=4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="label_sampler"):
        eqt50k_int(G, num_samples=1, batch_size=1, progress=False)
    labels = np.eye(2, dtype=np.float32)
    value = eqt50k_int(
        G,
        num_samples=1,
        batch_size=1,
        progress=False,
        label_sampler=lambda n, rng: labels[rng.integers(2, size=n)],
    )
    assert np.isfinite(value)


# --------------------------------------------------------------------------------------------------
# Image operations


def test_integer_translation_moves_pixels_and_masks_the_rest():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    shifted, mask = integer_translation(x, 2 / 8, -1 / 8)
    assert torch.equal(shifted[:, :, :7, 2:], x[:, :, 1:, :6])
    assert mask[:, :, :7, 2:].all() and mask.sum() == 2 * 3 * 7 * 6
    assert not shifted[mask == 0].any()


def test_fractional_translation_by_whole_pixels_is_a_shift():
    x = torch.randn(1, 1, 16, 16)
    shifted, mask = fractional_translation(x, 3 / 16, 2 / 16)
    expected, _ = integer_translation(x, 3 / 16, 2 / 16)
    valid = mask.bool()
    assert valid.any()
    torch.testing.assert_close(shifted[valid], expected[valid], rtol=0, atol=1e-5)


def test_rotations_of_a_band_limited_image():
    """A quarter turn is ``rot90`` in the interior; the pseudo-rotation band-limits without moving."""
    coords = (torch.arange(32) + 0.5) / 32 - 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    x = torch.sin(2 * math.pi * (1.5 * gx + 0.7 * gy + 0.2)) + torch.cos(2 * math.pi * (2 * gy - gx))
    x = x[None, None].repeat(2, 3, 1, 1)
    rotated, mask = fractional_rotation(x, math.pi / 2)
    valid = mask.bool()
    assert valid.any() and not valid.all()
    torch.testing.assert_close(rotated[valid], torch.rot90(x, 1, dims=(2, 3))[valid], rtol=0, atol=1e-4)
    for angle in (0.0, 0.3):
        filtered, mask = fractional_pseudo_rotation(x, angle)
        valid = mask.bool()
        torch.testing.assert_close(filtered[valid], x[valid], rtol=0, atol=1e-3)


def test_eq_metrics_are_registered_and_not_applicable_to_other_families():
    from stylegan.metrics import compute_metrics
    from stylegan.networks_stylegan2 import Generator as StyleGAN2

    sg2 = StyleGAN2(8, 0, 8, 16, 3, mapping_kwargs={"num_layers": 1},
                    synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip
    results = compute_metrics(["eqt50k_int", "eqr50k"], sg2, num_gen=2, batch_size=2, progress=False)
    assert [r["available"] for r in results] == [False, False]
    assert all("not applicable" in r["reason"] and "Generator has none" in r["reason"] for r in results)


def test_eq_metrics_through_compute_metrics_match_the_direct_function():
    from stylegan.metrics import compute_metrics
    from stylegan.metrics.equivariance import eqt50k_int

    G = StyleGAN3Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128,
                           channel_max=16, num_fp16_res=0)  # fmt: skip
    (result,) = compute_metrics(["eqt50k_int"], G, num_gen=2, batch_size=2, seed=3, progress=False)
    assert result["available"] and result["num_gen"] == 2
    assert result["value"] == pytest.approx(
        eqt50k_int(G, num_samples=2, batch_size=2, seed=3, progress=False)
    )
