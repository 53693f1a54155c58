"""FIR resampling of 2D feature maps: upsample, pad, filter, downsample ("upfirdn2d").

Semantics (per channel, as in ``scipy.signal.upfirdn`` and NVIDIA's StyleGAN2-ADA):

1. upsample by inserting ``up - 1`` zeros after every pixel,
2. pad with zeros (negative padding crops),
3. convolve with the 2D FIR filter ``f`` ("valid" convolution: every output tap lies in the padded input),
4. keep every ``down``-th pixel.

Padding is ``[x_before, x_after, y_before, y_after]`` (or one int for all four sides).

The reference formulation does exactly that (zero-stuffed tensor, padded copy, depthwise convolution,
subsampling). The fast one computes the same sums without the waste: a strided depthwise transposed
convolution upsamples without materialising the zeros, padding is done inside the convolution when
it is symmetric, and downsampling is a strided convolution that skips the discarded outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylegan.ops.impl import resolve_impl

Padding = int | Sequence[int]

BINOMIAL_TAPS = (1, 3, 3, 1)


def setup_filter(
    taps: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor = BINOMIAL_TAPS,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Build a float32 2D FIR filter from 1D taps (outer product) or a 2D array.

    ``normalize`` makes the filter sum to one (unit DC gain); ``gain`` then scales the overall
    signal magnitude of the 2D filter.
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2 or f.numel() == 0:
        raise ValueError(f"FIR filter must be 1D taps or a 2D array, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip([0, 1])
    return f * gain


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Normalise ``padding`` to ``(x_before, x_after, y_before, y_after)``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")
    return padding  # type: ignore[return-value]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images ``[N, C, H, W]`` (see module doc).

    ``flip_filter=False`` is a true convolution, ``True`` a correlation; ``gain`` scales the result.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got shape {tuple(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2D filter, got shape {tuple(f.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    pad = parse_padding(padding)
    if resolve_impl(impl) == "fast":
        return _upfirdn2d_fast(x, f, up, down, pad, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up, down, pad, flip_filter, gain)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int,
    down: int,
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Literal formulation: zero insertion, padding, depthwise convolution, subsampling."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    weight = (f * gain).to(x.dtype)
    if not flip_filter:  # conv2d correlates; flipping the filter makes it a convolution
        weight = weight.flip([0, 1])
    weight = weight[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _upfirdn2d_fast(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int,
    down: int,
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Same sums as :func:`_upfirdn2d_ref` without zero stuffing, padded copies or discarded outputs."""
    c = x.shape[1]
    fh, fw = f.shape
    weight = (f * gain).to(x.dtype)
    px0, px1, py0, py1 = pad
    if up > 1:
        # conv_transpose2d(x, f, stride=up) is the full convolution of the zero-stuffed x with f
        # (a true convolution, so the filter is flipped only for correlation); the requested padding
        # then shifts and crops that: [p0 - (k - 1), p1 + up - k] on each axis.
        if flip_filter:
            weight = weight.flip([0, 1])
        weight = weight[None, None].expand(c, 1, fh, fw)
        cx0, cx1, cy0, cy1 = px0 - (fw - 1), px1 + up - fw, py0 - (fh - 1), py1 + up - fh
        if cx0 == cx1 <= 0 and cy0 == cy1 <= 0:
            x = F.conv_transpose2d(x, weight, stride=up, padding=(-cy0, -cx0), groups=c)
        else:
            x = F.pad(F.conv_transpose2d(x, weight, stride=up, groups=c), [cx0, cx1, cy0, cy1])
        return x[:, :, ::down, ::down] if down > 1 else x

    if not flip_filter:  # conv2d correlates; flipping the filter makes it a convolution
        weight = weight.flip([0, 1])
    weight = weight[None, None].expand(c, 1, fh, fw)
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        return F.conv2d(x, weight, stride=down, padding=(py0, px0), groups=c)
    return F.conv2d(F.pad(x, [px0, px1, py0, py1]), weight, stride=down, groups=c)


def filter2d(
    x: torch.Tensor, f: torch.Tensor, padding: Padding = 0, gain: float = 1.0, impl: str | None = None
) -> torch.Tensor:
    """Filter with ``f``, padded so the output has the input's size (plus ``padding``)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fh, fw = f.shape
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 2,
    padding: Padding = 0,
    gain: float = 1.0,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample by ``up`` with the FIR filter ``f``; the output is ``up`` times the input's size."""
    px0, px1, py0, py1 = parse_padding(padding)
    fh, fw = f.shape
    pad = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=gain * up * up, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor,
    down: int = 2,
    padding: Padding = 0,
    gain: float = 1.0,
    impl: str | None = None,
) -> torch.Tensor:
    """Downsample by ``down`` with the FIR filter ``f``; the output is the input's size / ``down``."""
    px0, px1, py0, py1 = parse_padding(padding)
    fh, fw = f.shape
    pad = [
        px0 + (fw - down + 1) // 2,
        px1 + (fw - down) // 2,
        py0 + (fh - down + 1) // 2,
        py1 + (fh - down) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, gain=gain, impl=impl)
