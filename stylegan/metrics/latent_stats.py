"""The average of W (the centre that truncation pulls toward) and how samples spread around it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stylegan.devices import resolve_device

from .sampling import LabelSampler, conditioning_labels, prepare_generator, seeded

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def _sample_w(
    G: Any,
    num_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    label_sampler: LabelSampler | None,
) -> Iterator[torch.Tensor]:
    """Yield ``[B, w_dim]`` batches of untruncated w (the first of the broadcast ws)."""
    for stream, start in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - start)
        with seeded(seed, stream, device) as rng:
            z = torch.randn([n, G.z_dim], device=device)
            c = conditioning_labels(G, n, rng, label_sampler, device)
            w = G.mapping(z, c, truncation_psi=1.0)[:, 0].double()
        yield w


def w_average(
    G: Any,
    num_samples: int = 100_000,
    batch_size: int = 1024,
    seed: int = 0,
    device: torch.device | str | None = None,
    label_sampler: LabelSampler | None = None,
    histogram_bins: int = 50,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean of ``G.mapping(z, c)`` over ``num_samples`` latents, without truncation, and its statistics.

    Returns a dict of plain numbers and float64 arrays: ``w_avg`` and ``w_std`` (per dimension),
    the distances of the sampled w to the mean (``distance_mean``, ``distance_std``,
    ``distance_percentiles`` keyed by percentile, ``distance_histogram`` with ``counts`` and
    ``edges``), and ``num_samples``, ``seed``. Two passes over the same seeded latents: the first
    accumulates the moments, the second measures distances to the final mean, so memory does not
    grow with ``num_samples``.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    device = resolve_device(device)
    G = prepare_generator(G, device)
    total = sq_total = None
    distances = []
    with (
        torch.inference_mode(),
        tqdm(total=2 * num_samples, unit="w", desc="w average", disable=not progress) as bar,
    ):
        for w in _sample_w(G, num_samples, batch_size, seed, device, label_sampler):
            total = w.sum(0) if total is None else total + w.sum(0)
            sq_total = w.square().sum(0) if sq_total is None else sq_total + w.square().sum(0)
            bar.update(w.shape[0])
        mean = total / num_samples
        std = (sq_total / num_samples - mean.square()).clamp(min=0).sqrt()
        for w in _sample_w(G, num_samples, batch_size, seed, device, label_sampler):
            distances.append((w - mean).norm(dim=1).cpu())
            bar.update(w.shape[0])
    dist = torch.cat(distances).numpy()
    counts, edges = np.histogram(dist, bins=histogram_bins)
    return {
        "num_samples": num_samples,
        "seed": seed,
        "w_avg": mean.cpu().numpy(),
        "w_std": std.cpu().numpy(),
        "distance_mean": float(dist.mean()),
        "distance_std": float(dist.std()),
        "distance_percentiles": {
            p: float(v) for p, v in zip(PERCENTILES, np.percentile(dist, PERCENTILES), strict=True)
        },
        "distance_histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }
