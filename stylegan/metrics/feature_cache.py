"""Dataset features cached on disk by a content key, as ``.npy`` plus JSON metadata (no pickle)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stylegan.files import atomic_open, atomic_write_json


def _cache_paths(cache_dir: Path, key: str, detector_name: str) -> tuple[Path, Path]:
    stem = hashlib.sha256(json.dumps([key, detector_name]).encode()).hexdigest()[:32]
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def load_cached_features(cache_dir: str | os.PathLike, key: str, detector_name: str) -> np.ndarray | None:
    """The features stored for ``(key, detector_name)``, or None when absent or incomplete."""
    array_path, meta_path = _cache_paths(Path(cache_dir), key, detector_name)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("key") != key or meta.get("detector") != detector_name:
        return None
    features = np.load(array_path, allow_pickle=False)
    if list(features.shape) != meta.get("shape"):
        return None
    return features


def cached_dataset_features(
    cache_dir: str | os.PathLike,
    key: str,
    detector_name: str,
    compute_fn: Callable[[], np.ndarray],
) -> np.ndarray:
    """Return the features stored for ``(key, detector_name)``, computing and storing them if absent.

    ``key`` identifies the dataset content (e.g. the shard checksums) and everything else that
    changes the features (x-flip, item limit); ``detector_name`` should include the detector's
    sha256. The file name is a hash of both; the JSON records them verbatim and is written last,
    so a present JSON means a complete array.
    """
    cache_dir = Path(cache_dir)
    array_path, meta_path = _cache_paths(cache_dir, key, detector_name)
    cached = load_cached_features(cache_dir, key, detector_name)
    if cached is not None:
        return cached
    features = np.asarray(compute_fn())
    if features.ndim != 2:
        raise ValueError(f"compute_fn must return features [N, D], got shape {features.shape}")
    with atomic_open(array_path) as f:
        np.save(f, features, allow_pickle=False)
    meta = {
        "key": key,
        "detector": detector_name,
        "shape": list(features.shape),
        "dtype": str(features.dtype),
        "created": time.time(),
    }
    atomic_write_json(meta_path, meta)
    return features
