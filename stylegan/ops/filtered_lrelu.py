"""Filtered leaky ReLU (StyleGAN3): the activation of an alias-free layer.

Per channel, as NVIDIA's ``filtered_lrelu`` (whose reference path computes the same sums):

1. add the bias ``b``,
2. upsample by ``up`` with the FIR filter ``fu`` (zero insertion, ``padding``, convolution, gain ``up**2``),
3. leaky ReLU with ``slope``, times ``gain``, clamped to ``[-clamp, clamp]``,
4. filter with ``fd`` and keep every ``down``-th pixel.

Filters are 1-D taps (separable), 2-D arrays (e.g. StyleGAN3-R's radial filters) or None (identity).
A separable filter runs as its 2-D outer product through :func:`~stylegan.ops.upfirdn2d`: measured on
CPU over channels-last maps (StyleGAN3-T layers, forward and backward), one depthwise 2-D convolution
is as fast as two 1-D passes at 2x upsampling and 1.3x faster at 4x, and 2-4x faster than
banded-matrix products or zero insertion. Every step is an op of :mod:`stylegan.ops`, so gradients of
any order are available.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stylegan.ops.bias_act import bias_act
from stylegan.ops.fir import Padding, parse_padding, upfirdn2d


def _filter_2d(f: torch.Tensor | None) -> torch.Tensor | None:
    """The 2-D form of ``f``: the outer product of separable taps, None for the identity."""
    if f is None:
        return None
    if f.ndim == 1:
        return torch.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"FIR filter must be 1-D taps, a 2-D array or None, got shape {tuple(f.shape)}")
    return f


def _resample(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int,
    down: int,
    pad: tuple[int, int, int, int],
    gain: float,
    flip_filter: bool,
    impl: str | None,
) -> torch.Tensor:
    """``upfirdn2d`` that skips the convolution for an identity filter."""
    if f is not None or up > 1:
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
    if pad != (0, 0, 0, 0):
        x = F.pad(x, list(pad))
    x = x[:, :, ::down, ::down] if down > 1 else x
    return x * gain if gain != 1 else x


def _output_size(in_size: int, up: int, down: int, pad0: int, pad1: int, up_taps: int, down_taps: int) -> int:
    """Length of one output axis of :func:`filtered_lrelu`."""
    return (in_size * up + pad0 + pad1 - (up_taps - 1) - (down_taps - 1) + (down - 1)) // down


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """Bias, upsampling, leaky ReLU, downsampling of ``x`` ``[N, C, H, W]`` (see module doc).

    ``padding`` (``[x0, x1, y0, y1]``, ``[x, y]`` or one int; negative crops) applies to the upsampled
    image before ``fu``; ``flip_filter=True`` correlates instead of convolving. The result keeps
    ``x``'s dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects [N, C, H, W], got shape {tuple(x.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    if gain <= 0 or slope < 0 or (clamp is not None and clamp < 0):
        raise ValueError(f"need gain > 0, slope >= 0, clamp >= 0 or None; got {gain}, {slope}, {clamp}")
    fu, fd = _filter_2d(fu), _filter_2d(fd)
    pad = parse_padding(padding)
    fu_h, fu_w = (1, 1) if fu is None else fu.shape
    fd_h, fd_w = (1, 1) if fd is None else fd.shape
    out_h = _output_size(x.shape[2], up, down, pad[2], pad[3], fu_h, fd_h)
    out_w = _output_size(x.shape[3], up, down, pad[0], pad[1], fu_w, fd_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"filtered_lrelu of {tuple(x.shape)} with padding {pad} leaves no output pixels")

    if b is not None:
        x = bias_act(x, b, impl=impl)
    x = _resample(x, fu, up, 1, pad, up**2, flip_filter, impl)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl=impl)
    return _resample(x, fd, 1, down, (0, 0, 0, 0), 1.0, flip_filter, impl)
