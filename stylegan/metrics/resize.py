"""TensorFlow 1 bilinear resize, the resampling NVIDIA's Inception detector applies before FID.

TF1's ``tf.image.resize_bilinear`` (``align_corners=False``, no half-pixel centres) maps output
index ``j`` to source coordinate ``j * in_size / out_size`` and clamps the right/bottom neighbour at
the edge. This differs from ``torch.nn.functional.interpolate(..., align_corners=False)``, which
uses half-pixel centres, and the difference is visible in FID, so it is written out here.
"""

from __future__ import annotations

import torch


def _axis_weights(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower neighbour, upper neighbour and upper weight for every output index along one axis."""
    src = torch.arange(out_size, dtype=torch.float64, device=device) * (in_size / out_size)
    lower = src.floor().long()
    upper = (lower + 1).clamp(max=in_size - 1)
    return lower, upper, src - lower


def tf1_bilinear_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float images ``[N, C, H, W]`` to ``size = (out_h, out_w)`` exactly as TF1 does.

    Separable: rows are interpolated first, then columns; both passes are gathers plus a lerp, so
    the cost is linear in the number of output pixels.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"expected float images [N, C, H, W], got dtype {images.dtype} shape {tuple(images.shape)}"
        )
    out_h, out_w = size
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {size}")
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return images

    top, bottom, wy = _axis_weights(in_h, out_h, images.device)
    rows_top = images.index_select(2, top)
    rows = rows_top + (images.index_select(2, bottom) - rows_top) * wy.to(images.dtype).view(1, 1, -1, 1)

    left, right, wx = _axis_weights(in_w, out_w, images.device)
    cols_left = rows.index_select(3, left)
    return cols_left + (rows.index_select(3, right) - cols_left) * wx.to(images.dtype).view(1, 1, 1, -1)
