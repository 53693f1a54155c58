"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, averaged over subsets."""

from __future__ import annotations

import numpy as np
import torch

from stylegan.devices import resolve_device


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between equal-size samples with kernel ``k(u, v) = (u.v / d + 1)^3``."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kid_from_features(
    a: np.ndarray,
    b: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> float:
    """KID between feature sets ``a [Na, D]`` and ``b [Nb, D]``, as in StyleGAN2-ADA.

    Each of ``num_subsets`` rounds draws ``m = min(Na, Nb, max_subset_size)`` rows of each set
    without replacement and computes the unbiased MMD^2; the result is their mean. Computed in
    float64 on ``device`` (default: CUDA when available).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets [N, D] with equal D, got {a.shape} and {b.shape}")
    m = min(a.shape[0], b.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per subset, got subset size {m}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be positive, got {num_subsets}")
    device = resolve_device(device)
    a_t = torch.from_numpy(a).to(device, torch.float64)
    b_t = torch.from_numpy(b).to(device, torch.float64)
    rng = np.random.default_rng(seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for _ in range(num_subsets):
            ia = torch.from_numpy(rng.choice(a.shape[0], m, replace=False)).to(device)
            ib = torch.from_numpy(rng.choice(b.shape[0], m, replace=False)).to(device)
            total += _unbiased_mmd2(a_t[ia], b_t[ib])
    return float(total / num_subsets)
