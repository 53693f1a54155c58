"""Image conventions shared by the metrics: uint8 NCHW batches with three channels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

ImageBatch = np.ndarray | torch.Tensor


def quantize_generated(images: torch.Tensor) -> torch.Tensor:
    """Map generator output (float, nominally [-1, 1]) to uint8 the way NVIDIA's metrics do.

    ``x * 127.5 + 128`` then truncation toward zero: -1 maps to 0 and 1 to 255 after the clamp.
    """
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def as_uint8_rgb(batch: ImageBatch, device: torch.device | str | None = None) -> torch.Tensor:
    """Validate a uint8 NCHW batch (1 or 3 channels) and return it as a 3-channel tensor on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a numpy array or torch tensor of images, got {type(batch).__name__}")
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images [N, C, H, W] with C in (1, 3), got dtype {tensor.dtype} "
            f"shape {tuple(tensor.shape)}"
        )
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return tensor.to(device) if device is not None else tensor


def iterate_batches(images: ImageBatch | Iterable[ImageBatch], batch_size: int) -> Iterator[ImageBatch]:
    """Yield batches of at most ``batch_size`` from one array/tensor or from an iterable of batches."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(images, np.ndarray | torch.Tensor):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    for batch in images:
        if not isinstance(batch, np.ndarray | torch.Tensor):
            raise TypeError(
                f"expected image batches as numpy arrays or torch tensors, got {type(batch).__name__}"
            )
        for start in range(0, batch.shape[0], batch_size):
            yield batch[start : start + batch_size]


def with_mirrors(batches: Iterable[ImageBatch]) -> Iterator[ImageBatch]:
    """Yield each batch followed by its horizontally mirrored copy (the dataset's x-flip augmentation)."""
    for batch in batches:
        yield batch
        yield batch.flip(-1) if isinstance(batch, torch.Tensor) else np.ascontiguousarray(batch[..., ::-1])
