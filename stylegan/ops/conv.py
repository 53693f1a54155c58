"""Convolutions with FIR up/downsampling, and StyleGAN2's modulated convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylegan.ops.fir import Padding, parse_padding, upfirdn2d
from stylegan.ops.impl import resolve_impl


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: tuple[int, int] | int = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """``conv2d``/``conv_transpose2d``; ``flip_weight=False`` turns the correlation into a convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _is_channels_last(x: torch.Tensor) -> bool:
    """True when ``x`` is laid out NHWC (and not also plainly contiguous, as with one channel)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _pixels_by_channels(x: torch.Tensor) -> torch.Tensor:
    """The ``[N, H*W, C]`` view of a channels-last ``[N, C, H, W]`` tensor (no copy)."""
    n, c, h, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * width, c)


def _from_pixels_by_channels(y: torch.Tensor, h: int, width: int) -> torch.Tensor:
    """Inverse of :func:`_pixels_by_channels`: ``[N, H*W, C]`` to a channels-last ``[N, C, H, W]`` view."""
    n, _, c = y.shape
    return y.reshape(n, h, width, c).permute(0, 3, 1, 2)


def _pointwise(x: torch.Tensor, w: torch.Tensor, impl: str | None) -> torch.Tensor:
    """1x1 convolution without padding. The fast formulation is a matrix product, which on CPU is far
    quicker than a convolution with so little work per pixel (e.g. to and from RGB)."""
    if resolve_impl(impl) != "fast":
        return F.conv2d(x, w)
    n, _, h, width = x.shape
    w = w.reshape(w.shape[0], -1)
    if _is_channels_last(x):
        return _from_pixels_by_channels(torch.matmul(_pixels_by_channels(x), w.t()), h, width)
    if x.is_contiguous():
        return torch.bmm(w.expand(n, -1, -1), x.reshape(n, -1, h * width)).reshape(n, -1, h, width)
    return F.conv2d(x, w[:, :, None, None])


def _transpose_weight(w: torch.Tensor, groups: int, impl: str | None) -> torch.Tensor:
    """Reorder ``[O, I/g, kh, kw]`` conv weights into the ``[I, O/g, kh, kw]`` layout of conv_transpose2d.

    The fast formulation makes the result contiguous: a transposed view can look channels-last to the
    convolution backend, which then returns a channels-last output that costs a full copy in the
    forward and in the backward pass.
    """
    out_channels, in_per_group, kh, kw = w.shape
    if groups == 1:
        w = w.transpose(0, 1)
        return w.contiguous() if resolve_impl(impl) == "fast" else w
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """2D convolution with optional FIR upsampling (before) or downsampling (after).

    Equivalent to ``upfirdn2d(up)`` -> pad -> conv2d -> ``upfirdn2d(down)`` with padding given with
    respect to the upsampled image, but computed the cheap way round: a strided transposed convolution
    followed by the filter for ``up``, the filter followed by a strided convolution for ``down``, and
    resampling on the side with fewer channels for 1x1 kernels.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects 4D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample supports upsampling or downsampling, not both at once")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("resampling needs a FIR filter f")
    _, _, kh, kw = w.shape
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        fh, fw = f.shape
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        fh, fw = f.shape
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    pointwise = kw == 1 and kh == 1 and groups == 1
    if pointwise and pad == [0, 0, 0, 0]:
        return _pointwise(x, w, impl)
    if pointwise and down > 1:
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, impl=impl)
        return _pointwise(x, w, impl)
    if pointwise and up > 1:
        x = _pointwise(x, w, impl)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter, impl=impl)
    if down > 1:
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # The transposed convolution already covers kw - 1 (kw - up) pixels of the padding.
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(
            x,
            _transpose_weight(w, groups, impl),
            stride=up,
            padding=(pyt, pxt),
            groups=groups,
            transpose=True,
            flip_weight=not flip_weight,
        )
        pad = [px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt]
        return upfirdn2d(x, f, padding=pad, gain=up**2, flip_filter=flip_filter, impl=impl)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
    return _conv(F.pad(x, pad), w, groups=groups, flip_weight=flip_weight)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    impl: str | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, optionally demodulated, with additive noise.

    Per sample, the weight is scaled by ``styles`` along its input channels and (with ``demodulate``)
    renormalised to unit L2 norm per output channel. ``fused_modconv=True`` builds the per-sample weights
    and runs one grouped convolution; ``False`` scales the activations before and after a shared-weight
    convolution instead. Both compute the same function. The fast formulation also gets the
    demodulation coefficients from a small matmul and runs 1x1 kernels (toRGB) as a batched matmul.

    Args:
        x: ``[N, I, H, W]`` activations.
        weight: ``[O, I, kh, kw]`` (already gain-scaled by the caller where needed).
        styles: ``[N, I]`` modulation coefficients.
        noise: broadcastable to the output, added after demodulation.
    """
    batch_size = x.shape[0]
    _, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"x of shape {tuple(x.shape)} does not match weight {tuple(weight.shape)}")
    if styles.shape != (batch_size, in_channels):
        raise ValueError(f"styles must have shape {(batch_size, in_channels)}, got {tuple(styles.shape)}")

    # In float16, pre-normalise so the per-sample weights and their squares cannot overflow; the
    # demodulation divides the scale out again.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1 / (in_channels * kh * kw) ** 0.5 / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    fast = resolve_impl(impl) == "fast"
    pointwise = kh == kw == 1 and up == down == 1 and parse_padding(padding) == (0, 0, 0, 0)
    if fast and pointwise and (x.is_contiguous() or _is_channels_last(x)):
        return _modulated_pointwise(x, weight, styles, demodulate, noise)
    coefficients = _fast_coefficients if fast else _ref_coefficients
    w, dcoefs = coefficients(weight, styles, demodulate, fused_modconv)

    conv_kwargs = dict(
        f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight, impl=impl
    )
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), **conv_kwargs)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, groups=batch_size, **conv_kwargs)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _ref_coefficients(
    weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, fused: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-sample weights ``[N, O, I, kh, kw]`` (when fused) and demodulation coefficients ``[N, O]``,
    both derived from the explicitly modulated weights."""
    w = dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused:
        w = w * dcoefs.reshape(*dcoefs.shape, 1, 1, 1)
    return (w if fused else None), dcoefs


def _fast_coefficients(
    weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, fused: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """As :func:`_ref_coefficients`, with ``sum_ik (W_oik s_ni)^2 == sum_i s_ni^2 sum_k W_oik^2``: a small
    matmul instead of squaring and reducing (and back-propagating through) ``[N, O, I, kh, kw]``."""
    dcoefs = None
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    if not fused:
        return None, dcoefs
    coefs = styles.unsqueeze(1)  # [N, 1, I]
    if demodulate:
        coefs = coefs * dcoefs.unsqueeze(2)  # [N, O, I]
    return weight.unsqueeze(0) * coefs.unsqueeze(-1).unsqueeze(-1), dcoefs


def _modulated_pointwise(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, noise: torch.Tensor | None
) -> torch.Tensor:
    """Modulated 1x1 convolution as one batched matrix product with per-sample ``[O, I]`` weights:
    no pass over ``x`` to modulate it and no convolution with little work per pixel (toRGB)."""
    n, in_channels, h, width = x.shape
    w, _ = _fast_coefficients(weight, styles, demodulate, fused=True)
    w = w.reshape(n, -1, in_channels).to(x.dtype)
    if _is_channels_last(x):
        x = _from_pixels_by_channels(torch.bmm(_pixels_by_channels(x), w.transpose(1, 2)), h, width)
    else:
        x = torch.bmm(w, x.reshape(n, in_channels, h * width)).reshape(n, -1, h, width)
    return x if noise is None else x + noise.to(x.dtype)
