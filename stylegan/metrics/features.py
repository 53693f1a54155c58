"""One pass over image batches feeding any number of detector heads, with progress."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from stylegan.cpu_malloc import keep_freed_memory

from .images import ImageBatch, as_uint8_rgb

# On the CPU, heads see at most this many images at once: Inception's activations for larger batches
# (354 MiB per layer at 64 images) outgrow the caches and run x1.2 slower (benchmarks/bench_metrics.py).
CPU_CHUNK = 8

Head = Callable[[torch.Tensor], torch.Tensor]
"""uint8 ``[N, 3, H, W]`` on the device -> ``[N, D]``."""


def extract_features(
    batches: Iterable[ImageBatch],
    heads: Mapping[str, Head],
    device: torch.device,
    max_items: int | None = None,
    total: int | None = None,
    desc: str = "features",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Feed every uint8 NCHW batch (gray is repeated to RGB) to each head; stop after ``max_items``.

    Returns float32 ``[N, D]`` per head. The bar shows images per second. On the CPU, batches reach
    the heads in chunks of :data:`CPU_CHUNK` images, and glibc keeps freed memory for reuse
    (:mod:`stylegan.cpu_malloc`).
    """
    chunk = None
    if device.type == "cpu":
        chunk = CPU_CHUNK
        keep_freed_memory()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in heads}
    count = 0
    limits = [x for x in (max_items, total) if x is not None]
    expected = min(limits) if limits else None
    with torch.inference_mode(), tqdm(total=expected, unit="img", desc=desc, disable=not progress) as bar:
        for batch in batches:
            if max_items is not None:
                if count >= max_items:
                    break
                batch = batch[: max_items - count]
            images = as_uint8_rgb(batch, device)
            for part in images.split(chunk or images.shape[0]):
                for name, head in heads.items():
                    outputs[name].append(head(part).to(torch.float32).cpu())
            count += images.shape[0]
            bar.update(images.shape[0])
    if count == 0:
        raise ValueError(f"{desc}: the image source yielded no images")
    return {name: torch.cat(chunks).numpy() for name, chunks in outputs.items()}
