"""ADA augmentation: exactness of the warp, per-op behaviour, differentiability and the p controller."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylegan.augment import (
    AUGPIPE_PRESETS,
    SYM2,
    SYM6,
    AdaController,
    AugmentPipe,
    octave_filter_bank,
)


def _images(n: int = 6, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand([n, c, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _pipe(p: float = 1.0, **ops: float) -> AugmentPipe:
    pipe = AugmentPipe(**ops)
    pipe.p.fill_(p)
    return pipe


def _run(pipe: AugmentPipe, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return pipe(x, generator=torch.Generator().manual_seed(seed))


# --- filters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet", [SYM2, SYM6])
def test_wavelets_are_orthonormal_with_vanishing_moments(wavelet):
    h = np.asarray(wavelet)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12)
    # Orthonormal to its own even shifts: sum_n h[n] h[n + 2k] = delta_k.
    for k in range(len(h) // 2):
        assert np.dot(h[2 * k :], h[: len(h) - 2 * k]) == pytest.approx(float(k == 0), abs=1e-11)
    # The matching highpass filter annihilates polynomials of degree < len(h) / 2.
    g = h[::-1] * (-1.0) ** np.arange(len(h))
    n = np.arange(len(h)) / len(h)
    for m in range(len(h) // 2):
        assert np.sum(g * n**m) == pytest.approx(0, abs=1e-9)


def test_octave_bands_partition_the_spectrum():
    bank = octave_filter_bank()
    assert bank.shape == (4, 43)
    impulse = np.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-15)  # zero phase
    response = np.abs(np.fft.rfft(bank, n=512, axis=1))
    peaks = response.argmax(axis=1)
    assert list(peaks) == sorted(peaks) and peaks[0] == 0  # lowest band first, rising centre frequency
    assert response[0, 0] == pytest.approx(1) and np.allclose(response[1:, 0], 0, atol=1e-12)


# --- identity and blitting ----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(AUGPIPE_PRESETS))
def test_p_zero_is_identity(preset):
    x = _images()
    y = _run(_pipe(0.0, **AUGPIPE_PRESETS[preset]), x)
    # Exact unless the general warp runs, whose wavelet reconstruction is exact up to rounding.
    tolerance = 2e-5 if any(op in AUGPIPE_PRESETS[preset] for op in ("scale", "rotate")) else 0.0
    torch.testing.assert_close(y, x, atol=tolerance, rtol=0)


def test_xflip_flips_about_half_of_the_images_exactly():
    x = _images(n=64, size=16)
    y = _run(_pipe(xflip=1), x)
    flipped = [torch.equal(yi, xi.flip(-1)) for xi, yi in zip(x, y, strict=True)]
    same = [torch.equal(yi, xi) for xi, yi in zip(x, y, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 16 < sum(flipped) < 48


def test_rotate90_rotates_by_quarter_turns():
    x = _images(n=32, size=16)
    y = _run(_pipe(rotate90=1), x)
    turns = []
    for xi, yi in zip(x, y, strict=True):
        matches = [k for k in range(4) if torch.equal(yi, torch.rot90(xi, k, dims=(1, 2)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}


def test_integer_translation_moves_content_by_whole_pixels():
    size, reach = 32, 8
    x = _images(n=8, size=size)
    y = _run(_pipe(xint=1, xint_max=reach / size), x)
    shifts = []
    for xi, yi in zip(x, y, strict=True):
        errors = {}
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                out = yi[:, max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)]
                src = xi[:, max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)]
                errors[dx, dy] = float((out - src).abs().max())
        best = min(errors, key=errors.get)
        assert errors[best] == 0, "output is not a whole-pixel shift of the input"
        shifts.append(best)
    assert any(s != (0, 0) for s in shifts)


def test_general_geometry_keeps_a_constant_image_constant():
    # Reflect padding and unit-gain filters: no dark borders, no brightness change.
    x = torch.full([8, 3, 16, 16], 0.37)
    y = _run(_pipe(**AUGPIPE_PRESETS["geom"]), x)
    torch.testing.assert_close(y, x, atol=5e-5, rtol=0)


def test_general_geometry_changes_images():
    x = _images(n=8, size=16)
    y = _run(_pipe(**AUGPIPE_PRESETS["geom"]), x)
    changed = (y - x).flatten(1).abs().amax(dim=1) > 0.1
    assert bool(changed.all())


# --- colour --------------------------------------------------------------------------------------------


def _luma_and_chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    luma = x.mean(dim=1, keepdim=True)
    return luma, x - luma


def test_brightness_adds_one_offset_per_image():
    x = _images()
    delta = _run(_pipe(brightness=1), x) - x
    per_image = delta.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6, rtol=0)
    offsets = per_image[:, 0]
    assert bool((offsets.abs() > 1e-4).all())
    assert float(offsets.std()) == pytest.approx(0.2, rel=0.8)  # brightness_std


def test_contrast_scales_each_image_by_a_positive_factor():
    x = _images()
    ratio = (_run(_pipe(contrast=1), x) / x).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert bool((ratio[:, 0] > 0).all()) and bool(((ratio[:, 0] - 1).abs() > 1e-4).all())


def test_saturation_scales_chroma_and_keeps_luma():
    x = _images()
    luma, chroma = _luma_and_chroma(x)
    luma_y, chroma_y = _luma_and_chroma(_run(_pipe(saturation=1), x))
    torch.testing.assert_close(luma_y, luma, atol=1e-5, rtol=0)
    ratio = (chroma_y / chroma).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=2e-3, rtol=2e-3)


def test_hue_rotates_chroma_around_the_luma_axis():
    x = _images()
    luma, chroma = _luma_and_chroma(x)
    y = _run(_pipe(hue=1), x)
    luma_y, chroma_y = _luma_and_chroma(y)
    torch.testing.assert_close(luma_y, luma, atol=1e-5, rtol=0)
    torch.testing.assert_close(chroma_y.norm(dim=1), chroma.norm(dim=1), atol=1e-5, rtol=0)
    assert bool(((y - x).flatten(1).abs().amax(dim=1) > 1e-3).all())


def test_lumaflip_negates_luma_of_about_half_the_images():
    x = _images(n=64, size=8)
    luma, chroma = _luma_and_chroma(x)
    luma_y, chroma_y = _luma_and_chroma(_run(_pipe(lumaflip=1), x))
    torch.testing.assert_close(chroma_y, chroma, atol=1e-5, rtol=0)
    flipped = (luma_y + luma).flatten(1).abs().amax(dim=1) < 1e-5
    kept = (luma_y - luma).flatten(1).abs().amax(dim=1) < 1e-5
    assert bool((flipped | kept).all()) and 16 < int(flipped.sum()) < 48


def test_grey_images_take_the_mean_of_the_colour_transform():
    x = _images(c=1)
    y = _run(_pipe(brightness=1), x)
    assert y.shape == x.shape
    assert bool(((y - x).flatten(1).std(dim=1) < 1e-6).all())


# --- filtering and corruptions -------------------------------------------------------------------------


def test_imgfilter_keeps_constant_images_up_to_the_low_band_gain():
    x = torch.full([8, 3, 32, 32], 0.5)
    y = _run(_pipe(imgfilter=1), x)
    per_image = y.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5, rtol=0)


def test_imgfilter_rejects_images_smaller_than_the_filter():
    with pytest.raises(ValueError, match="imgfilter needs images larger than 21 px"):
        _run(_pipe(imgfilter=1), _images(size=16))


def test_noise_and_cutout():
    x = _images(n=16)
    noisy = _run(_pipe(noise=1), x)
    assert bool(((noisy - x).flatten(1).std(dim=1) > 0).all())
    cut = _run(_pipe(cutout=1), x)
    zeroed = (cut == 0).flatten(1).float().mean(dim=1)
    torch.testing.assert_close(cut[cut != 0], x[cut != 0])
    # A 0.5 x 0.5 square centred anywhere in the image: at least a quarter of it stays inside.
    assert bool(((zeroed >= 1 / 16) & (zeroed <= 1 / 4)).all())


# --- differentiability ---------------------------------------------------------------------------------


def test_warp_backward_is_the_exact_adjoint():
    # Given its random draws the pipeline is linear in the image (colour: affine), so the autograd
    # vector-Jacobian product must satisfy <J^T u, v> = <u, J v> with J v from two forward passes.
    pipe = _pipe(**AUGPIPE_PRESETS["bg"], brightness=1, contrast=1, saturation=1)
    x = _images(n=4, size=16, seed=1).requires_grad_(True)
    u, v = _images(n=4, size=16, seed=2), _images(n=4, size=16, seed=3)
    (vjp,) = torch.autograd.grad((_run(pipe, x) * u).sum(), x)
    jvp = _run(pipe, x.detach() + v) - _run(pipe, x.detach())
    assert float((vjp * v).sum()) == pytest.approx(float((u * jvp).sum()), rel=1e-4)


def test_double_backward_through_the_warp_matches_closed_form():
    # R1 through augmentation with a linear D(a) = <w, a>: grad_x D = J^T w, and the gradient of
    # |J^T w|^2 / 2 with respect to w is J J^T w.
    pipe = _pipe(**AUGPIPE_PRESETS["bg"])
    x = _images(n=2, size=16, seed=4).requires_grad_(True)
    w = _images(n=1, size=16, seed=5)[0].requires_grad_(True)
    (jt_w,) = torch.autograd.grad((_run(pipe, x) * w).sum(), x, create_graph=True)
    (jt_w.square().sum() / 2).backward()
    expected = _run(pipe, jt_w.detach() + x.detach()) - _run(pipe, x.detach())
    torch.testing.assert_close(w.grad, expected.sum(dim=0), atol=1e-4, rtol=1e-4)


# --- determinism ---------------------------------------------------------------------------------------


def test_seeded_generator_is_deterministic():
    pipe = _pipe(**AUGPIPE_PRESETS["bgcfnc"])
    x = _images()
    torch.testing.assert_close(_run(pipe, x, seed=7), _run(pipe, x, seed=7), atol=0, rtol=0)
    assert not torch.equal(_run(pipe, x, seed=7), _run(pipe, x, seed=8))


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown augpipe 'bgcx'"):
        AugmentPipe.from_preset("bgcx")


# --- adaptive p ----------------------------------------------------------------------------------------


def test_ada_raises_p_when_d_overfits_and_lowers_it_otherwise():
    pipe = AugmentPipe.from_preset("bgc")
    ada = AdaController(pipe, batch_size=32, target=0.6, interval=4, kimg=0.5)
    step = 32 * 4 / 500
    for batch_idx in range(1, 13):
        ada.observe(torch.full([32, 1], 3.0))  # D is sure every real is real: r_t = 1 > 0.6
        rt = ada.maybe_adjust(batch_idx)
        assert (rt is not None) == (batch_idx % 4 == 0)
    assert ada.last_rt == 1.0
    assert float(pipe.p) == pytest.approx(3 * step)
    for batch_idx in range(13, 33):
        logits = torch.tensor([[1.0]] * 16 + [[-1.0]] * 16)  # r_t = 0 < 0.6
        ada.observe(logits)
        ada.maybe_adjust(batch_idx)
    assert float(pipe.p) == 0.0  # clamped at zero


def test_ada_state_round_trips_and_reduce_is_applied():
    pipe = AugmentPipe.from_preset("blit")
    seen = []

    def reduce(stats: torch.Tensor) -> torch.Tensor:
        seen.append(stats.clone())
        return stats * 2  # as if a second rank had seen the same signs

    ada = AdaController(pipe, batch_size=4, interval=2, kimg=1, reduce=reduce)
    ada.observe(torch.ones(4, 1))
    state = ada.state_dict()
    restored = AdaController(AugmentPipe.from_preset("blit"), batch_size=4, interval=2, kimg=1, reduce=reduce)
    restored.load_state_dict(state)
    restored.observe(torch.ones(4, 1))
    assert restored.maybe_adjust(2) == 1.0
    torch.testing.assert_close(seen[0], torch.tensor([8.0, 8.0], dtype=torch.float64))
    assert float(restored.pipe.p) == pytest.approx(4 * 2 / 1000)
