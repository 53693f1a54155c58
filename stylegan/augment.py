"""Adaptive discriminator augmentation (ADA, Karras et al. 2020).

:class:`AugmentPipe` applies the paper's augmentations to a batch of images in [-1, 1]. Every op is
differentiable, so the generator is trained through it and the R1 penalty can be taken w.r.t. the
un-augmented reals. Each op fires independently per image with probability ``multiplier * p``, where
``p`` is a buffer that :class:`AdaController` tunes during training.

Geometric ops are composed into inverse homogeneous matrices (output pixel -> input pixel). The
blit ops (x-flip, quarter turns, whole-pixel translation) map pixel centres onto pixel centres and are
applied exactly by index remapping with reflection at the borders. The general ops (scaling,
rotation, anisotropy, fractional translation) are composed into one matrix and executed in a single
warp: reflect padding, 2x upsampling with the orthogonal ``sym6`` wavelet, bilinear ``grid_sample``,
and 2x downsampling with the time-reversed wavelet, so that an identity warp reconstructs the input
exactly. The official pipeline sends the blit ops through the warp as well, where the wavelet's
non-linear phase makes a flip inexact by a few percent of the signal; remapping them is exact and
composes to the same transform. Colour ops are composed into one 4x4 affine colour matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Daubechies' least-asymmetric orthogonal wavelets (lowpass decomposition filters, sum sqrt(2)).
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}

#: The official ``--augpipe`` presets: probability multipliers per op.
AUGPIPE_PRESETS: dict[str, dict[str, float]] = {
    "blit": BLIT,
    "geom": GEOM,
    "color": COLOR,
    "filter": {"imgfilter": 1.0},
    "noise": {"noise": 1.0},
    "cutout": {"cutout": 1.0},
    "bg": {**BLIT, **GEOM},
    "bgc": {**BLIT, **GEOM, **COLOR},
    "bgcf": {**BLIT, **GEOM, **COLOR, "imgfilter": 1.0},
    "bgcfn": {**BLIT, **GEOM, **COLOR, "imgfilter": 1.0, "noise": 1.0},
    "bgcfnc": {**BLIT, **GEOM, **COLOR, "imgfilter": 1.0, "noise": 1.0, "cutout": 1.0},
}

# Relative power of the four imgfilter bands, lowest first (a 1/f image spectrum).
_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


# --- homogeneous matrices ---------------------------------------------------------------------------


def _matrix(rows: Sequence[Sequence[float | Tensor]], batch: int, device: torch.device) -> Tensor:
    """Stack scalars and [batch] tensors into a [batch, rows, cols] matrix."""
    entries = [
        torch.as_tensor(entry, dtype=torch.float32, device=device).expand(batch)
        for row in rows
        for entry in row
    ]
    return torch.stack(entries, dim=-1).reshape(batch, len(rows), len(rows[0]))


def _translate2d(tx, ty, batch, device) -> Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], batch, device)


def _scale2d(sx, sy, batch, device) -> Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], batch, device)


def _rotate2d(theta, batch, device) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], batch, device)


def _translate3d(t, batch, device) -> Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], batch, device)


def _scale3d(s, batch, device) -> Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], batch, device)


def _rotate3d(axis: Tensor, theta: Tensor, batch, device) -> Tensor:
    """Rotation by ``theta`` about the unit ``axis`` (Rodrigues' formula)."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    return _matrix(
        [
            [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
            [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
            [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
            [0, 0, 0, 1],
        ],
        batch,
        device,
    )


# --- filters ------------------------------------------------------------------------------------------


def octave_filter_bank(wavelet: Sequence[float] = SYM2) -> np.ndarray:
    """Four zero-phase band filters (lowest band first) that sum to a unit impulse.

    Built a trous from the half-band pair ``lo(z) = H(z)H(1/z)/2`` and ``hi = delta - lo`` of an
    orthogonal wavelet ``H``: band 3 is ``hi``, band 2 is ``lo * hi(z^2)``, band 1 is
    ``lo * lo(z^2) * hi(z^4)`` and band 0 is ``lo * lo(z^2) * lo(z^4)``.
    """
    h = np.asarray(wavelet, dtype=np.float64)
    h_hi = h * (-1.0) ** np.arange(h.size)
    lo = np.convolve(h, h[::-1]) / 2
    hi = np.convolve(h_hi, h_hi[::-1]) / 2

    def dilate(f: np.ndarray, factor: int) -> np.ndarray:
        out = np.zeros((f.size - 1) * factor + 1)
        out[::factor] = f
        return out

    lowpass_chain = [np.ones(1), lo, np.convolve(lo, dilate(lo, 2))]
    bands = [np.convolve(lowpass_chain[2], dilate(lo, 4))]
    bands += [np.convolve(lowpass_chain[level], dilate(hi, 2**level)) for level in (2, 1, 0)]
    width = max(band.size for band in bands)
    return np.stack([np.pad(band, (width - band.size) // 2) for band in bands])


def _separable_conv(x: Tensor, taps: Tensor, stride: int = 1) -> Tensor:
    """Correlate every channel of x [N, C, H, W] with the 1-D ``taps`` along both axes."""
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    x = F.conv2d(x, taps.reshape(1, 1, 1, -1), stride=(1, stride))
    x = F.conv2d(x, taps.reshape(1, 1, -1, 1), stride=(stride, 1))
    return x.reshape(n, c, x.shape[2], x.shape[3])


def _upsample2x(x: Tensor, h: Tensor) -> Tensor:
    """Zero-insertion 2x upsampling followed by convolution with ``2 * h`` (h sums to one)."""
    n, c, height, width = x.shape
    x = F.pad(x.reshape(n, c, height, 1, width, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, height * 2, width * 2)
    taps = h.numel()
    before, after = (taps + 1) // 2, (taps - 2) // 2
    x = F.pad(x, [before, after, before, after])
    return _separable_conv(x, h.flip(0) * 2)


def _downsample2x(x: Tensor, h: Tensor, crop: int) -> Tensor:
    """Correlate with ``h`` (i.e. convolve with its time reverse), drop ``crop`` pixels per side, decimate."""
    taps = h.numel()
    before, after = (taps - 1) // 2 - crop, (taps - 2) // 2 - crop
    x = F.pad(x, [before, after, before, after])
    return _separable_conv(x, h, stride=2)


# --- the pipeline -------------------------------------------------------------------------------------


class AugmentPipe(nn.Module):
    """The ADA augmentation pipeline; see the module docstring.

    The keyword arguments named after ops are probability multipliers (0 disables the op); the others
    set the strength of each op, with the paper's defaults.
    """

    def __init__(
        self,
        *,
        xflip: float = 0,
        rotate90: float = 0,
        xint: float = 0,
        xint_max: float = 0.125,
        scale: float = 0,
        rotate: float = 0,
        aniso: float = 0,
        xfrac: float = 0,
        scale_std: float = 0.2,
        rotate_max: float = 1,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness: float = 0,
        contrast: float = 0,
        lumaflip: float = 0,
        hue: float = 0,
        saturation: float = 0,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1,
        saturation_std: float = 1,
        imgfilter: float = 0,
        imgfilter_bands: Sequence[float] = (1, 1, 1, 1),
        imgfilter_std: float = 1,
        noise: float = 0,
        cutout: float = 0,
        noise_std: float = 0.1,
        cutout_size: float = 0.5,
    ) -> None:
        super().__init__()
        self.register_buffer("p", torch.zeros([]))
        self.xflip = xflip
        self.rotate90 = rotate90
        self.xint = xint
        self.xint_max = xint_max
        self.scale = scale
        self.rotate = rotate
        self.aniso = aniso
        self.xfrac = xfrac
        self.scale_std = scale_std
        self.rotate_max = rotate_max
        self.aniso_std = aniso_std
        self.xfrac_std = xfrac_std
        self.brightness = brightness
        self.contrast = contrast
        self.lumaflip = lumaflip
        self.hue = hue
        self.saturation = saturation
        self.brightness_std = brightness_std
        self.contrast_std = contrast_std
        self.hue_max = hue_max
        self.saturation_std = saturation_std
        self.imgfilter = imgfilter
        self.imgfilter_bands = tuple(imgfilter_bands)
        self.imgfilter_std = imgfilter_std
        self.noise = noise
        self.cutout = cutout
        self.noise_std = noise_std
        self.cutout_size = cutout_size
        if len(self.imgfilter_bands) != len(_BAND_POWER):
            raise ValueError(f"imgfilter_bands needs {len(_BAND_POWER)} entries, got {imgfilter_bands!r}")
        sym6 = torch.tensor(SYM6, dtype=torch.float32)
        self.register_buffer("geom_filter", sym6 / sym6.sum(), persistent=False)
        self.register_buffer(
            "band_filters", torch.as_tensor(octave_filter_bank(), dtype=torch.float32), persistent=False
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: float) -> AugmentPipe:
        """Build one of the official ``--augpipe`` presets (``blit``, ``geom``, ``bgc``, ...)."""
        if name not in AUGPIPE_PRESETS:
            raise ValueError(f"unknown augpipe {name!r}; choose one of {sorted(AUGPIPE_PRESETS)}")
        return cls(**{**AUGPIPE_PRESETS[name], **overrides})

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``images`` [N, C, H, W] (C = 1 or 3); ``generator`` makes the draws reproducible."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape [N, 1 or 3, H, W], got {list(images.shape)}")
        draw = _Draws(images.shape[0], images.device, self.p, generator)
        height, width = images.shape[2], images.shape[3]
        if any(m > 0 for m in (self.xflip, self.rotate90, self.xint)):
            images = _remap_pixels(images, self._sample_blit(draw, width, height))
        if any(m > 0 for m in (self.scale, self.rotate, self.aniso, self.xfrac)):
            images = self._warp(images, self._sample_general(draw, width, height))
        if any(m > 0 for m in (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation)):
            images = _apply_color_matrix(images, self._sample_color(draw, images.shape[1]))
        if self.imgfilter > 0:
            images = self._filter(images, draw)
        if self.noise > 0:
            sigma = draw.where(self.noise, draw.randn([1, 1, 1]).abs() * self.noise_std, 0.0, shape=[1, 1, 1])
            images = images + draw.randn(images.shape[1:]) * sigma
        if self.cutout > 0:
            images = images * self._cutout_mask(images, draw)
        return images

    # -- geometry --------------------------------------------------------------------------------------

    def _sample_blit(self, draw: _Draws, width: int, height: int) -> Tensor:
        """Inverse blit transform per image (output pixel -> input pixel), with integer entries."""
        n, dev = draw.batch, draw.device
        g_inv = torch.eye(3, device=dev).expand(n, 3, 3)
        if self.xflip > 0:
            flip = draw.where(self.xflip, torch.floor(draw.rand() * 2), 0.0)
            g_inv = g_inv @ _scale2d(1 - 2 * flip, 1, n, dev)
        if self.rotate90 > 0:
            quarter_turns = draw.where(self.rotate90, torch.floor(draw.rand() * 4), 0.0)
            g_inv = g_inv @ _rotate2d(math.pi / 2 * quarter_turns, n, dev)
        if self.xint > 0:
            t = draw.where(self.xint, (draw.rand([2]) * 2 - 1) * self.xint_max, 0.0, shape=[1])
            g_inv = g_inv @ _translate2d(
                -torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), n, dev
            )
        return g_inv

    def _sample_general(self, draw: _Draws, width: int, height: int) -> Tensor:
        """Inverse general transform per image, applied after the blit ops: output pixel -> input pixel."""
        n, dev = draw.batch, draw.device
        g_inv = torch.eye(3, device=dev).expand(n, 3, 3)
        if self.scale > 0:
            s = draw.where(self.scale, torch.exp2(draw.randn() * self.scale_std), 1.0)
            g_inv = g_inv @ _scale2d(1 / s, 1 / s, n, dev)
        # Pre- and post-rotation each fire with p_rot so that P(either) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = draw.where_p(p_rot, (draw.rand() * 2 - 1) * math.pi * self.rotate_max, 0.0)
            g_inv = g_inv @ _rotate2d(theta, n, dev)
        if self.aniso > 0:
            s = draw.where(self.aniso, torch.exp2(draw.randn() * self.aniso_std), 1.0)
            g_inv = g_inv @ _scale2d(1 / s, s, n, dev)
        if self.rotate > 0:
            theta = draw.where_p(p_rot, (draw.rand() * 2 - 1) * math.pi * self.rotate_max, 0.0)
            g_inv = g_inv @ _rotate2d(theta, n, dev)
        if self.xfrac > 0:
            t = draw.where(self.xfrac, draw.randn([2]) * self.xfrac_std, 0.0, shape=[1])
            g_inv = g_inv @ _translate2d(-t[:, 0] * width, -t[:, 1] * height, n, dev)
        return g_inv

    def _warp(self, images: Tensor, g_inv: Tensor) -> Tensor:
        """Resample ``images`` through the inverse transforms ``g_inv`` (pixels, origin at the centre)."""
        n, c, height, width = images.shape
        dev = images.device
        filter_pad = self.geom_filter.numel() // 4
        cx, cy = (width - 1) / 2, (height - 1) / 2

        # Reflect-pad just enough to cover where the output corners land in the input, plus filter support.
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)
        src = (g_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, batch * corner]
        reach = torch.cat([-src, src]).amax(dim=1)  # [-x_min, -y_min, x_max, y_max]
        margin = reach + torch.tensor([2 * filter_pad - cx, 2 * filter_pad - cy] * 2, device=dev)
        upper = torch.tensor([width - 1, height - 1] * 2, device=dev, dtype=margin.dtype)
        mx0, my0, mx1, my1 = (int(v) for v in margin.clamp(min=0).minimum(upper).ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, n, dev) @ g_inv

        # Move to the 2x grid: x_up = 2 x - 1/2 in centred pixel units.
        images = _upsample2x(images, self.geom_filter)
        to_up = _translate2d(-0.5, -0.5, n, dev) @ _scale2d(2, 2, n, dev)
        from_up = _scale2d(0.5, 0.5, n, dev) @ _translate2d(0.5, 0.5, n, dev)
        g_inv = to_up @ g_inv @ from_up

        # Sample the output canvas (the output plus the filter margin, at 2x) in normalised coordinates.
        out_h, out_w = (height + 2 * filter_pad) * 2, (width + 2 * filter_pad) * 2
        to_norm = _scale2d(2 / images.shape[3], 2 / images.shape[2], n, dev)
        from_norm = _scale2d(out_w / 2, out_h / 2, n, dev)
        theta = (to_norm @ g_inv @ from_norm)[:, :2, :]
        grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _downsample2x(images, self.geom_filter, crop=2 * filter_pad)

    # -- colour ----------------------------------------------------------------------------------------

    def _sample_color(self, draw: _Draws, channels: int) -> Tensor:
        """Affine colour transform per image as a [N, 4, 4] matrix acting on (r, g, b, 1)."""
        n, dev = draw.batch, draw.device
        eye = torch.eye(4, device=dev)
        c_mat = eye.expand(n, 4, 4)
        if self.brightness > 0:
            b = draw.where(self.brightness, draw.randn() * self.brightness_std, 0.0)
            c_mat = _translate3d(b, n, dev) @ c_mat
        if self.contrast > 0:
            s = draw.where(self.contrast, torch.exp2(draw.randn() * self.contrast_std), 1.0)
            c_mat = _scale3d(s, n, dev) @ c_mat
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)
        luma_proj = torch.outer(luma, luma)
        if self.lumaflip > 0:
            flip = draw.where(self.lumaflip, torch.floor(draw.rand([1, 1]) * 2), 0.0, shape=[1, 1])
            c_mat = (eye - 2 * luma_proj * flip) @ c_mat  # Householder reflection of the luma axis.
        if self.hue > 0 and channels > 1:
            theta = draw.where(self.hue, (draw.rand() * 2 - 1) * math.pi * self.hue_max, 0.0)
            c_mat = _rotate3d(luma, theta, n, dev) @ c_mat
        if self.saturation > 0 and channels > 1:
            s = draw.where(
                self.saturation, torch.exp2(draw.randn([1, 1]) * self.saturation_std), 1.0, shape=[1, 1]
            )
            c_mat = (luma_proj + (eye - luma_proj) * s) @ c_mat
        return c_mat

    # -- image-space filtering and corruptions ----------------------------------------------------------

    def _filter(self, images: Tensor, draw: _Draws) -> Tensor:
        """Amplify the four octave bands by random gains, keeping the expected image power."""
        n, c, height, width = images.shape
        pad = self.band_filters.shape[1] // 2
        if min(height, width) <= pad:
            raise ValueError(f"imgfilter needs images larger than {pad} px, got {height}x{width}")
        band_power = torch.tensor(_BAND_POWER, device=images.device)
        gains = torch.ones([n, len(_BAND_POWER)], device=images.device)
        for band, strength in enumerate(self.imgfilter_bands):
            gain = draw.where(self.imgfilter * strength, torch.exp2(draw.randn() * self.imgfilter_std), 1.0)
            band_gain = torch.ones_like(gains)
            band_gain[:, band] = gain
            gains = gains * band_gain / (band_power * band_gain.square()).sum(dim=1, keepdim=True).sqrt()
        taps = (gains @ self.band_filters).repeat_interleave(c, dim=0)  # [N * C, taps]
        x = F.pad(images.reshape(1, n * c, height, width), [pad, pad, pad, pad], mode="reflect")
        x = F.conv2d(x, taps[:, None, None, :], groups=n * c)
        x = F.conv2d(x, taps[:, None, :, None], groups=n * c)
        return x.reshape(n, c, height, width)

    def _cutout_mask(self, images: Tensor, draw: _Draws) -> Tensor:
        """Zero a centred rectangle of ``cutout_size`` at a uniform random position, per image."""
        _, _, height, width = images.shape
        full_size = torch.full([draw.batch, 2, 1, 1], self.cutout_size, device=draw.device)
        size = draw.where(self.cutout, full_size, 0.0, shape=[1, 1, 1])
        center = draw.rand([2, 1, 1])
        x = (torch.arange(width, device=draw.device) + 0.5) / width
        y = (torch.arange(height, device=draw.device)[:, None] + 0.5) / height
        outside_x = (x - center[:, 0]).abs() >= size[:, 0] / 2
        outside_y = (y - center[:, 1]).abs() >= size[:, 1] / 2
        return (outside_x | outside_y).to(images.dtype)[:, None]


class _Draws:
    """Per-image random draws for one batch, gated by the augmentation probability ``p``."""

    def __init__(
        self, batch: int, device: torch.device, p: Tensor, generator: torch.Generator | None
    ) -> None:
        self.batch, self.device, self.p, self.generator = batch, device, p, generator

    def rand(self, shape: Sequence[int] = ()) -> Tensor:
        return torch.rand([self.batch, *shape], device=self.device, generator=self.generator)

    def randn(self, shape: Sequence[int] = ()) -> Tensor:
        return torch.randn([self.batch, *shape], device=self.device, generator=self.generator)

    def where_p(
        self, prob: Tensor | float, value: Tensor, default: float, shape: Sequence[int] = ()
    ) -> Tensor:
        """``value`` where a uniform draw falls below ``prob``, else ``default``."""
        fire = self.rand(shape) < prob
        return torch.where(fire, value, torch.full_like(value, default))

    def where(self, multiplier: float, value: Tensor, default: float, shape: Sequence[int] = ()) -> Tensor:
        """``value`` with probability ``multiplier * p`` per image, else ``default``."""
        return self.where_p(multiplier * self.p, value, default, shape)


def _reflect_index(index: Tensor, size: int) -> Tensor:
    """Fold out-of-range indices back into [0, size) by mirroring about the edge pixels."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def _remap_pixels(images: Tensor, g_inv: Tensor) -> Tensor:
    """Exactly apply inverse transforms that map pixel centres onto pixel centres."""
    n, c, height, width = images.shape
    dev = images.device
    ys = torch.arange(height, device=dev, dtype=torch.float32) - (height - 1) / 2
    xs = torch.arange(width, device=dev, dtype=torch.float32) - (width - 1) / 2
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    out_coords = torch.stack([grid_x.flatten(), grid_y.flatten(), torch.ones_like(grid_x.flatten())])
    src = g_inv @ out_coords  # [N, 3, H * W]
    src_x = _reflect_index(torch.round(src[:, 0] + (width - 1) / 2).long(), width)
    src_y = _reflect_index(torch.round(src[:, 1] + (height - 1) / 2).long(), height)
    index = (src_y * width + src_x)[:, None, :].expand(n, c, height * width)
    return images.flatten(2).gather(2, index).reshape(n, c, height, width)


def _apply_color_matrix(images: Tensor, c_mat: Tensor) -> Tensor:
    n, c, height, width = images.shape
    flat = images.reshape(n, c, height * width)
    if c == 3:
        flat = c_mat[:, :3, :3] @ flat + c_mat[:, :3, 3:]
    else:  # Grey images are treated as r = g = b and the output channels averaged back to one.
        rows = c_mat[:, :3, :].mean(dim=1, keepdim=True)
        flat = flat * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
    return flat.reshape(n, c, height, width)


# --- adaptive p ---------------------------------------------------------------------------------------


class AdaController:
    """Tunes ``pipe.p`` from the overfitting heuristic r_t = E[sign(D(real))].

    Every ``interval`` minibatches, p moves by ``sign(r_t - target) * batch * interval / (kimg * 1000)``
    (so it can traverse 0 -> 1 in ``kimg`` thousand images) and is clamped at zero, as in the paper.
    Signs are accumulated on the device without synchronising; ``reduce`` (e.g. an all-reduce over
    ranks) is applied to the [sum, count] pair before each adjustment.
    """

    def __init__(
        self,
        pipe: AugmentPipe,
        *,
        batch_size: int,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if interval < 1 or kimg <= 0 or batch_size < 1:
            raise ValueError(
                f"need interval >= 1, kimg > 0, batch_size >= 1; got {interval}, {kimg}, {batch_size}"
            )
        self.pipe, self.target, self.interval, self.kimg = pipe, target, interval, kimg
        self.set_batch_size(batch_size)
        self.reduce = reduce
        self.stats = torch.zeros(2, dtype=torch.float64, device=pipe.p.device)  # [sum of signs, count]
        self.last_rt: float | None = None

    def set_batch_size(self, batch_size: int) -> None:
        """The global minibatch from now on (progressive growing changes it between stages)."""
        self.step_size = batch_size * self.interval / (self.kimg * 1000)

    def observe(self, real_logits: Tensor) -> None:
        signs = real_logits.detach().sign()
        self.stats[0] += signs.sum().to(torch.float64)
        self.stats[1] += signs.numel()

    def maybe_adjust(self, batch_idx: int) -> float | None:
        """After minibatch ``batch_idx`` (counted from 1): adjust p if due; return r_t when adjusted."""
        if batch_idx % self.interval != 0:
            return None
        stats = self.reduce(self.stats.clone()) if self.reduce is not None else self.stats
        total, count = stats.tolist()
        self.stats.zero_()
        if count == 0:
            return None
        self.last_rt = total / count
        adjust = float(np.sign(self.last_rt - self.target)) * self.step_size
        self.pipe.p.copy_((self.pipe.p + adjust).clamp(min=0))
        return self.last_rt

    def state_dict(self) -> dict[str, Tensor]:
        return {"p": self.pipe.p.detach().cpu().clone(), "stats": self.stats.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.pipe.p.copy_(state["p"])
        self.stats.copy_(state["stats"])
