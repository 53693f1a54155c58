"""Improved precision and recall (Kynkäänniemi et al. 2019) on feature sets.

Each set is modelled as a union of balls: around every point, a ball reaching its k-th nearest
neighbour within the same set. Precision is the fraction of generated points inside the real
manifold, recall the fraction of real points inside the generated one. Distances are computed in
row batches with ``torch.cdist`` and reduced per column batch, so memory stays at
``row_batch_size x col_batch_size`` however large the sets are.
"""

from __future__ import annotations

import numpy as np
import torch

from stylegan.devices import resolve_device


def _kth_neighbour_radii(
    manifold: torch.Tensor, k: int, row_batch_size: int, col_batch_size: int
) -> torch.Tensor:
    """Distance from every manifold point to its k-th nearest neighbour (itself excluded)."""
    radii = []
    for rows in manifold.split(row_batch_size):
        # The k+1 smallest distances per column batch contain the k+1 smallest overall.
        candidates = [
            torch.cdist(rows, cols).topk(min(k + 1, cols.shape[0]), dim=1, largest=False).values
            for cols in manifold.split(col_batch_size)
        ]
        # Index k (0-based) skips the point's zero distance to itself, as NVIDIA's kthvalue(k + 1).
        radii.append(torch.cat(candidates, dim=1).kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside_any_ball(
    probes: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, row_batch_size: int, col_batch_size: int
) -> torch.Tensor:
    inside = []
    for rows in probes.split(row_batch_size):
        hit = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        for cols, cols_radii in zip(centres.split(col_batch_size), radii.split(col_batch_size), strict=True):
            hit |= (torch.cdist(rows, cols) <= cols_radii).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def precision_recall(
    real: np.ndarray | torch.Tensor,
    gen: np.ndarray | torch.Tensor,
    k: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Precision and recall of ``gen`` against ``real`` (both ``[N, D]`` features), neighbourhood ``k``.

    Distances are computed in float32; NVIDIA rounds the features to float16 first, which can flip
    points lying within float16 precision of a ball's surface.
    """
    device = resolve_device(device)
    real_t, gen_t = torch.as_tensor(real), torch.as_tensor(gen)
    if real_t.ndim != 2 or gen_t.ndim != 2 or real_t.shape[1] != gen_t.shape[1]:
        raise ValueError(
            f"expected feature sets [N, D] with equal D, got {tuple(real_t.shape)} and {tuple(gen_t.shape)}"
        )
    if k < 1 or min(real_t.shape[0], gen_t.shape[0]) <= k:
        raise ValueError(
            f"k={k} needs more than k points per set, got {real_t.shape[0]} real and {gen_t.shape[0]} gen"
        )
    real_t = real_t.to(device, torch.float32)
    gen_t = gen_t.to(device, torch.float32)
    with torch.inference_mode():
        results = []
        for manifold, probes in ((real_t, gen_t), (gen_t, real_t)):
            radii = _kth_neighbour_radii(manifold, k, row_batch_size, col_batch_size)
            inside = _inside_any_ball(probes, manifold, radii, row_batch_size, col_batch_size)
            results.append(float(inside.float().mean()))
    return results[0], results[1]
