"""File helpers shared by the data stages: digests, atomic writes, JSON lines, the download cache."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stylegan.files import atomic_write_bytes, atomic_write_json

__all__ = ["atomic_write_bytes", "atomic_write_json", "file_digest", "read_jsonl", "write_jsonl"]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line (manifests, skipped-input lists), written atomically."""
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def default_cache_dir(name: str) -> Path:
    """Where downloaded archives and metadata are kept between runs (outside the DVC outputs):
    ``$XDG_CACHE_HOME/stylegan-pipeline/<name>``, by default under ``~/.cache``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "stylegan-pipeline" / name
