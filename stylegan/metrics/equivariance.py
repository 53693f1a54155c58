"""Equivariance metrics of StyleGAN3 (Karras et al. 2021, Appendix E), as NVIDIA measures them.

Each metric compares two images of the same ``ws``: the generator's output transformed by an image
operation, and the output rendered with the transformed input (``G.synthesis.input.transform``,
the inverse transform of the image's coordinates). The result is the PSNR in dB of their
difference over the pixels where both are defined (dynamic range 2, images in [-1, 1]):

- ``eqt50k_int``: integer translations, up to ``translate_max`` of the image in x and y,
- ``eqt50k_frac``: fractional translations, the reference shifted by a Lanczos-3 interpolation,
- ``eqr50k``: rotations up to ``rotate_max * 180`` degrees; the reference is rotated with an
  oriented band-limiting filter, and the rendered image gets the same band limit without moving
  (a pseudo-rotation), so both hold the same frequencies.

Every batch draws one transformation for all its images; batches are always full, so
``ceil(num_samples / batch_size)`` batches run. Batch ``i`` draws its latents, labels and
transformation from RNGs seeded by ``(seed, i)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylegan.ops import filter2d, upsample2d

from .sampling import LabelSampler, conditioning_labels, prepare_generator, seeded

KINDS = ("eqt_int", "eqt_frac", "eqr")

# --------------------------------------------------------------------------------------------------
# Image operations


def _sinc(x: torch.Tensor) -> torch.Tensor:
    y = (x * np.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp(1e-30, float("inf")))


def _lanczos_window(x: torch.Tensor, a: float) -> torch.Tensor:
    x = x.abs() / a
    return torch.where(x < 1, _sinc(x), torch.zeros_like(x))


def rotation_matrix(angle: float | torch.Tensor) -> torch.Tensor:
    """3x3 homogeneous matrix ``[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]`` of ``angle`` (radians)."""
    angle = torch.as_tensor(angle).to(torch.float32)
    mat = torch.eye(3, device=angle.device)
    mat[0, 0] = angle.cos()
    mat[0, 1] = angle.sin()
    mat[1, 0] = -angle.sin()
    mat[1, 1] = angle.cos()
    return mat


def integer_translation(
    x: torch.Tensor, tx: float | torch.Tensor, ty: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift images ``[N, C, H, W]`` by ``(tx, ty)`` image sizes rounded to whole pixels; return the
    shifted images (zeros where nothing moved in) and the mask of valid pixels."""
    _, _, h, w = x.shape
    ix = int(torch.as_tensor(tx * w).to(torch.float32).round())
    iy = int(torch.as_tensor(ty * h).to(torch.float32).round())
    shifted = torch.zeros_like(x)
    mask = torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        rows, cols = slice(max(iy, 0), h + min(iy, 0)), slice(max(ix, 0), w + min(ix, 0))
        shifted[:, :, rows, cols] = x[:, :, max(-iy, 0) : h + min(-iy, 0), max(-ix, 0) : w + min(-ix, 0)]
        mask[:, :, rows, cols] = 1
    return shifted, mask


def fractional_translation(
    x: torch.Tensor, tx: float | torch.Tensor, ty: float | torch.Tensor, a: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift images by ``(tx, ty)`` image sizes with separable Lanczos-``a`` interpolation; return the
    shifted images and the mask of pixels whose whole filter footprint lay inside the image."""
    _, _, h, w = x.shape
    tx = torch.as_tensor(tx * w).to(dtype=torch.float32, device=x.device)
    ty = torch.as_tensor(ty * h).to(dtype=torch.float32, device=x.device)
    ix, iy = int(tx.floor()), int(ty.floor())
    fx, fy = tx - ix, ty - iy
    b = a - 1

    shifted = torch.zeros_like(x)
    x0, y0, x1, y1 = max(ix - b, 0), max(iy - b, 0), min(ix + a, 0) + w, min(iy + a, 0) + h
    if x0 < x1 and y0 < y1:
        taps = torch.arange(a * 2, device=x.device) - b
        filter_x = (_sinc(taps - fx) * _sinc((taps - fx) / a)).unsqueeze(0)
        filter_y = (_sinc(taps - fy) * _sinc((taps - fy) / a)).unsqueeze(1)
        y = filter2d(x, filter_x / filter_x.sum(), padding=[b, a, 0, 0])
        y = filter2d(y, filter_y / filter_y.sum(), padding=[0, 0, b, a])
        rows = slice(max(b - iy, 0), h + b + a + min(-iy - a, 0))
        cols = slice(max(b - ix, 0), w + b + a + min(-ix - a, 0))
        shifted[:, :, y0:y1, x0:x1] = y[:, :, rows, cols]

    mask = torch.zeros_like(x)
    x0, y0, x1, y1 = max(ix + a, 0), max(iy + a, 0), min(ix - b, 0) + w, min(iy - b, 0) + h
    if x0 < x1 and y0 < y1:
        mask[:, :, y0:y1, x0:x1] = 1
    return shifted, mask


def affine_bandlimit_filter(
    mat: torch.Tensor,
    a: int = 3,
    amax: int = 16,
    aflt: int = 64,
    up: int = 4,
    cutoff_in: float = 1,
    cutoff_out: float = 1,
) -> torch.Tensor:
    """Oriented 2-D low-pass filter ``[2 amax up - 1]^2`` at ``up`` times the pixel rate for the affine
    map ``mat``: the band limits of its input and of its output (sinc filters in both coordinate
    frames, convolved), windowed by the convolution of the two Lanczos-``a`` windows; built on a
    ``2 aflt``-pixel grid and cropped to ``2 amax`` pixels, each of the ``up^2`` phases summing to
    ``1 / up^2``."""
    if not a <= amax < aflt:
        raise ValueError(f"need a <= amax < aflt, got a={a}, amax={amax}, aflt={aflt}")
    mat = torch.as_tensor(mat).to(torch.float32)
    taps = ((torch.arange(aflt * up * 2 - 1, device=mat.device) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)

    def convolve(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real

    lowpass = convolve(
        _sinc(xi * cutoff_in) * _sinc(yi * cutoff_in), _sinc(xo * cutoff_out) * _sinc(yo * cutoff_out)
    )
    window = convolve(
        _lanczos_window(xi, a) * _lanczos_window(yi, a), _lanczos_window(xo, a) * _lanczos_window(yo, a)
    )
    f = lowpass * window

    crop = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[crop:-crop, crop:-crop]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / (up**2)
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def affine_transformation(
    x: torch.Tensor, mat: torch.Tensor, up: int = 4, **filter_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample images by the affine map ``mat`` (image coordinates in [-1, 1]): upsample ``up`` times
    through :func:`affine_bandlimit_filter`, then sample bilinearly. Return the images and the mask
    of output pixels that map inside the image, away from its filtered border."""
    _, _, h, w = x.shape
    mat = torch.as_tensor(mat).to(dtype=torch.float32, device=x.device)
    f = affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    p = f.shape[0] // 2

    theta = mat.inverse()
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / w
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + p / up * 2)
    theta[1, :] *= h / (h + p / up * 2)
    theta = theta[:2, :3].unsqueeze(0).repeat([x.shape[0], 1, 1])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)

    y = upsample2d(x, f, up=up, padding=p)
    z = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = torch.zeros_like(y)
    c = p * 2 + 1
    mask[:, :, c:-c, c:-c] = 1
    mask = F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return z, mask


def fractional_rotation(
    x: torch.Tensor, angle: float | torch.Tensor, a: int = 3, **filter_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate images by ``angle`` radians (the operator R_alpha); return the images and their mask."""
    angle = torch.as_tensor(angle).to(dtype=torch.float32, device=x.device)
    return affine_transformation(x, rotation_matrix(angle), a=a, amax=a * 2, **filter_kwargs)


def fractional_pseudo_rotation(
    x: torch.Tensor, angle: float | torch.Tensor, a: int = 3, **filter_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Band-limit images as a rotation by ``angle`` would, without rotating them (R*_alpha); return
    the filtered images and the mask of pixels away from the border."""
    angle = torch.as_tensor(angle).to(dtype=torch.float32, device=x.device)
    f = affine_bandlimit_filter(rotation_matrix(-angle), a=a, amax=a * 2, up=1, **filter_kwargs)
    y = filter2d(x, f)
    mask = torch.zeros_like(y)
    c = f.shape[0] // 2
    mask[:, :, c:-c, c:-c] = 1
    return y, mask


# --------------------------------------------------------------------------------------------------
# Metrics


def _input_transform(G: Any) -> torch.Tensor:
    transform = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
    if not isinstance(transform, torch.Tensor) or transform.shape != (3, 3):
        raise ValueError(
            "equivariance metrics apply to StyleGAN3 generators only: they need a 3x3 "
            f"G.synthesis.input.transform, which {type(G).__name__} lacks"
        )
    return transform


def equivariance_psnrs(
    G: Any,
    num_samples: int,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    kinds: tuple[str, ...] = KINDS,
    translate_max: float = 0.125,
    rotate_max: float = 1.0,
    label_sampler: LabelSampler | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """PSNRs in dB (``inf`` for identical images) of the equivariance ``kinds`` (``"eqt_int"``,
    ``"eqt_frac"``, ``"eqr"``), measured on one set of samples.

    ``G.synthesis`` is called as ``synthesis(ws, noise_mode="const", force_fp32=True)``; a
    conditional ``G`` needs ``label_sampler`` (see :mod:`stylegan.metrics.sampling`).
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"need num_samples >= 1 and batch_size >= 1, got {num_samples}, {batch_size}")
    _input_transform(G)
    device = torch.device(device)
    G = prepare_generator(G, device)
    transform = _input_transform(G)
    identity = torch.eye(3, device=device)

    def render(ws: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
        transform.copy_(mat)
        return G.synthesis(ws, noise_mode="const", force_fp32=True)

    sums = torch.zeros([len(kinds), 2], dtype=torch.float64)  # [squared error, mask] per kind
    num_batches = math.ceil(num_samples / batch_size)
    with (
        torch.inference_mode(),
        tqdm(total=num_batches, unit="batch", desc="eq", disable=not progress) as bar,
    ):
        for stream in range(num_batches):
            with seeded(seed, stream, device) as rng:
                z = torch.randn([batch_size, G.z_dim], device=device)
                c = conditioning_labels(G, batch_size, rng, label_sampler, device)
                ws = G.mapping(z, c)
                orig = render(ws, identity)
                for k, kind in enumerate(kinds):
                    if kind == "eqt_int":
                        t = (torch.rand(2, device=device) * 2 - 1) * translate_max
                        t = (t * G.img_resolution).round() / G.img_resolution
                        mat = identity.clone()
                        mat[:2, 2] = -t
                        ref, mask = integer_translation(orig, t[0], t[1])
                        img = render(ws, mat)
                    elif kind == "eqt_frac":
                        t = (torch.rand(2, device=device) * 2 - 1) * translate_max
                        mat = identity.clone()
                        mat[:2, 2] = -t
                        ref, mask = fractional_translation(orig, t[0], t[1])
                        img = render(ws, mat)
                    else:
                        angle = (torch.rand([], device=device) * 2 - 1) * (rotate_max * np.pi)
                        ref, ref_mask = fractional_rotation(orig, angle)
                        img, img_mask = fractional_pseudo_rotation(render(ws, rotation_matrix(-angle)), angle)
                        mask = ref_mask * img_mask
                    sums[k, 0] += ((ref - img).square() * mask).to(torch.float64).sum().cpu()
                    sums[k, 1] += mask.to(torch.float64).sum().cpu()
            bar.update(1)

    mse = sums[:, 0] / sums[:, 1]
    psnrs = 20 * np.log10(2) - 10 * mse.log10()
    return {kind: float(p) for kind, p in zip(kinds, psnrs, strict=True)}


def eqt50k_int(
    G: Any,
    num_samples: int = 50_000,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> float:
    """EQ-T: PSNR (dB) of integer-translation equivariance; ``kwargs`` as :func:`equivariance_psnrs`."""
    return _one_kind(G, "eqt_int", num_samples, batch_size, seed, device, kwargs)


def eqt50k_frac(
    G: Any,
    num_samples: int = 50_000,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> float:
    """EQ-T_frac: PSNR (dB) of fractional-translation equivariance."""
    return _one_kind(G, "eqt_frac", num_samples, batch_size, seed, device, kwargs)


def eqr50k(
    G: Any,
    num_samples: int = 50_000,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> float:
    """EQ-R: PSNR (dB) of rotation equivariance."""
    return _one_kind(G, "eqr", num_samples, batch_size, seed, device, kwargs)


def _one_kind(
    G: Any, kind: str, num_samples: int, batch_size: int, seed: int, device: Any, kwargs: dict[str, Any]
) -> float:
    return equivariance_psnrs(G, num_samples, batch_size, seed, device, kinds=(kind,), **kwargs)[kind]
