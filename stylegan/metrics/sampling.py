"""Drawing latents, labels and images from a generator, reproducibly.

The generator interface: ``G.z_dim``, ``G.c_dim``, ``G.mapping(z, c, truncation_psi=...)`` returning
``ws [N, num_ws, w_dim]``, ``G.synthesis(ws, noise_mode=...)`` returning NCHW float images in
roughly [-1, 1]. Batch ``i`` of a run with seed ``s`` draws everything (z, t, labels, noise) from
generators seeded by ``(s, i)``, so results depend only on the seed and the batch size, and the
caller's global RNG state is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from stylegan.archs.base import has_w_space, require_w_space

from ..latents import truncate
from .images import quantize_generated

LabelSampler = Callable[[int, np.random.Generator], np.ndarray]


def dataset_label_sampler(labels: np.ndarray) -> LabelSampler:
    """A sampler drawing rows of the dataset's label matrix ``[N, c_dim]`` uniformly with replacement."""
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"expected dataset labels [N > 0, c_dim], got shape {labels.shape}")
    return lambda n, rng: labels[rng.integers(labels.shape[0], size=n)]


def class_frequency_sampler(probs: np.ndarray) -> LabelSampler:
    """A sampler drawing one-hot labels with the given class frequencies (as the dataset has them)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or len(probs) == 0 or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(f"expected non-negative class frequencies, got {probs.tolist()}")
    probs = probs / probs.sum()
    eye = np.eye(len(probs), dtype=np.float32)
    return lambda n, rng: eye[rng.choice(len(probs), size=n, p=probs)]


@contextmanager
def seeded(seed: int, stream: int, device: torch.device) -> Iterator[np.random.Generator]:
    """Seed torch (CPU and ``device``) for one batch inside a forked RNG state; yield a numpy generator."""
    seq = np.random.SeedSequence([seed, stream])
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seq.generate_state(1, np.uint32)[0]))
        yield np.random.default_rng(seq)


def prepare_generator(G: Any, device: torch.device) -> Any:
    """A private, frozen copy of ``G`` on ``device`` (metrics may rewrite its noise buffers)."""
    G = copy.deepcopy(G)
    if isinstance(G, torch.nn.Module):
        G = G.eval().requires_grad_(False).to(device)
    return G


def conditioning_labels(
    G: Any, n: int, rng: np.random.Generator, label_sampler: LabelSampler | None, device: torch.device
) -> torch.Tensor:
    """``c [n, c_dim]`` for ``G`` from ``label_sampler`` (checked), or ``[n, 0]`` for an unconditional G."""
    if G.c_dim == 0:
        return torch.zeros([n, 0], device=device)
    if label_sampler is None:
        raise ValueError(
            f"G is conditional (c_dim={G.c_dim}); pass label_sampler to draw labels from the dataset"
        )
    c = np.asarray(label_sampler(n, rng), dtype=np.float32)
    if c.shape != (n, G.c_dim):
        raise ValueError(f"label_sampler returned shape {c.shape}, expected {(n, G.c_dim)}")
    return torch.from_numpy(c).to(device)


def map_latents(
    G: Any, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, w_avg: torch.Tensor | None = None
) -> torch.Tensor:
    """``ws`` for ``z``; truncated toward ``w_avg`` when given, else toward the generator's own average."""
    if w_avg is None:
        return G.mapping(z, c, truncation_psi=truncation_psi)
    return truncate(G.mapping(z, c, truncation_psi=1.0), w_avg, truncation_psi)


def generate_images(
    G: Any,
    num_images: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    truncation_psi: float = 1.0,
    w_avg: np.ndarray | torch.Tensor | None = None,
    label_sampler: LabelSampler | None = None,
    noise_mode: str = "random",
) -> Iterator[torch.Tensor]:
    """Yield uint8 ``[B, C, H, W]`` batches of generated images, ``num_images`` in total.

    A generator without a W space (ProGAN) is called as ``G(z, c)``; it cannot be truncated."""
    if truncation_psi != 1 and not has_w_space(G):
        require_w_space(G, f"truncation (psi={truncation_psi})")
    G = prepare_generator(G, device)
    w_avg_t = None if w_avg is None else torch.as_tensor(w_avg, dtype=torch.float32, device=device)
    for stream, start in enumerate(range(0, num_images, batch_size)):
        n = min(batch_size, num_images - start)
        # Both contexts close before the yield, so the caller's grad mode and RNG state are untouched.
        with seeded(seed, stream, device) as rng, torch.inference_mode():
            z = torch.randn([n, G.z_dim], device=device)
            c = conditioning_labels(G, n, rng, label_sampler, device)
            if has_w_space(G):
                ws = map_latents(G, z, c, truncation_psi, w_avg_t)
                images = quantize_generated(G.synthesis(ws, noise_mode=noise_mode))
            else:
                images = quantize_generated(G(z, c))
        yield images
