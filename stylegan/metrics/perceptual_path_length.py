"""Perceptual path length (Karras et al. 2019), as measured by StyleGAN2-ADA.

For each sample: two latents, an interpolation point ``t`` (uniform for ``sampling='full'``, 0 for
``'end'``), the images at ``t`` and ``t + epsilon`` (slerp in Z, lerp in W), and their LPIPS
distance divided by ``epsilon**2``. The PPL is the mean of these distances after dropping those
below the 1st and above the 99th percentile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .sampling import LabelSampler, conditioning_labels, map_latents, prepare_generator, seeded

LPIPS_RESOLUTION = 256

LpipsFeatures = Callable[[torch.Tensor], torch.Tensor]
"""Float images ``[N, 3, H, W]`` in [0, 255] -> ``[N, D]``; squared L2 between rows is the LPIPS distance."""


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of ``a`` and ``b``; the result has unit norm.

    ``t`` broadcasts against ``[..., 1]``; ``t = 0`` gives ``a / |a|`` and the angle travelled is
    proportional to ``t`` (``t > 1`` continues along the same great circle).
    """
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos.clamp(-1, 1))
    ortho = b - cos * a  # the component of b orthogonal to a spans the great circle
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """NVIDIA's FFHQ face crop: rows [3/8, 7/8) and columns [2/8, 6/8) of a square image."""
    height, width = images.shape[-2:]
    if height != width:
        raise ValueError(f"face crop needs square images, got {height}x{width}")
    c = height // 8
    return images[..., c * 3 : c * 7, c * 2 : c * 6]


def lpips_input(images: torch.Tensor, crop: bool) -> torch.Tensor:
    """Generator output in [-1, 1] -> the LPIPS network's input: cropped, downsampled, [0, 255], RGB.

    The downsampling factor is ``resolution // 256`` of the uncropped image, by box averaging.
    """
    factor = images.shape[-1] // LPIPS_RESOLUTION
    if crop:
        images = face_crop(images)
    if factor > 1:
        images = F.avg_pool2d(images, factor)
    images = (images + 1) * (255 / 2)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _randomize_noise_buffers(G: Any) -> None:
    if isinstance(G, torch.nn.Module):
        for name, buf in G.named_buffers():
            if name.endswith("noise_const"):
                buf.copy_(torch.randn_like(buf))


def ppl_distances(
    G: Any,
    lpips_features: LpipsFeatures,
    num_samples: int,
    epsilon: float = 1e-4,
    space: Literal["z", "w"] = "w",
    sampling: Literal["full", "end"] = "end",
    crop: bool = False,
    batch_size: int = 2,
    seed: int = 0,
    device: torch.device | str = "cpu",
    truncation_psi: float = 1.0,
    w_avg: np.ndarray | torch.Tensor | None = None,
    label_sampler: LabelSampler | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The ``num_samples`` scaled LPIPS distances ``d(t, t + eps) / eps**2`` (before filtering)."""
    if space not in ("z", "w") or sampling not in ("full", "end"):
        raise ValueError(
            f"space must be 'z' or 'w' and sampling 'full' or 'end', got {space!r}, {sampling!r}"
        )
    device = torch.device(device)
    G = prepare_generator(G, device)
    w_avg_t = None if w_avg is None else torch.as_tensor(w_avg, dtype=torch.float32, device=device)
    dists = []
    with torch.inference_mode(), tqdm(total=num_samples, unit="img", desc="ppl", disable=not progress) as bar:
        for stream, start in enumerate(range(0, num_samples, batch_size)):
            n = min(batch_size, num_samples - start)
            with seeded(seed, stream, device) as rng:
                c = conditioning_labels(G, n, rng, label_sampler, device)
                t = torch.rand([n, 1], device=device) * (1.0 if sampling == "full" else 0.0)
                z0, z1 = torch.randn([2 * n, G.z_dim], device=device).chunk(2)
                c2 = torch.cat([c, c])
                if space == "w":
                    w0, w1 = map_latents(G, torch.cat([z0, z1]), c2, truncation_psi, w_avg_t).chunk(2)
                    ws = torch.cat([w0.lerp(w1, t[:, :, None]), w0.lerp(w1, t[:, :, None] + epsilon)])
                else:
                    zt = torch.cat([slerp(z0, z1, t), slerp(z0, z1, t + epsilon)])
                    ws = map_latents(G, zt, c2, truncation_psi, w_avg_t)
                _randomize_noise_buffers(G)
                images = G.synthesis(ws, noise_mode="const")
            feat0, feat1 = lpips_features(lpips_input(images, crop)).chunk(2)
            dists.append(((feat0 - feat1).square().sum(dim=1) / epsilon**2).double().cpu())
            bar.update(n)
    return torch.cat(dists).numpy()


def ppl_from_distances(distances: np.ndarray) -> float:
    """Mean of the distances within [1st percentile (lower), 99th percentile (higher)]."""
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"expected a non-empty vector of distances, got shape {d.shape}")
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())


def perceptual_path_length(G: Any, lpips_features: LpipsFeatures, num_samples: int, **kwargs: Any) -> float:
    """PPL of ``G``; keyword arguments as :func:`ppl_distances`."""
    return ppl_from_distances(ppl_distances(G, lpips_features, num_samples, **kwargs))
