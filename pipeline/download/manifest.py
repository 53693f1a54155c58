"""The output every data source writes: ``images/``, ``manifest.jsonl`` and, for labelled data,
``labels.json``.

A manifest row describes one image: ``file`` (relative to the output folder), ``size`` (bytes),
``sha256``, ``label`` (int or None) and ``source_url`` (None for generated or local data), followed by
source-specific keys. ``labels.json`` maps each class index (as a string, JSON keys being strings) to
``{"name": ..., "count": ...}`` and whatever else the source knows of the class.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.files import atomic_write_json, file_digest, read_jsonl, write_jsonl

IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.jsonl"
LABELS_FILE = "labels.json"
LANDMARKS_FILE = "landmarks.json"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

ManifestRow = dict[str, Any]


def manifest_row(
    file: str, size: int, sha256: str, label: int | None, source_url: str | None, **extra: Any
) -> ManifestRow:
    return {"file": file, "size": size, "sha256": sha256, "label": label, "source_url": source_url, **extra}


def describe_files(
    out_dir: Path, files: Sequence[str], *, workers: int = 4, desc: str = "checksums"
) -> list[tuple[int, str]]:
    """(size, sha256) of each file (relative to `out_dir`), hashed on a thread pool."""

    def describe(file: str) -> tuple[int, str]:
        path = out_dir / file
        return path.stat().st_size, file_digest(path, "sha256")

    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(describe, files), total=len(files), desc=desc, unit="file"))


def begin_output(out_dir: Path) -> None:
    """Remove a previous run's manifest and side files, so a run that fails leaves none describing
    images it did not write."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_FILE, LABELS_FILE, LANDMARKS_FILE):
        (out_dir / name).unlink(missing_ok=True)


def write_manifest(out_dir: Path, rows: Iterable[ManifestRow]) -> Path:
    path = out_dir / MANIFEST_FILE
    write_jsonl(path, rows)
    return path


def read_manifest(out_dir: str | os.PathLike[str]) -> list[ManifestRow]:
    return read_jsonl(Path(out_dir) / MANIFEST_FILE)


def write_labels(
    out_dir: Path, classes: Mapping[int, Mapping[str, Any]], rows: Sequence[ManifestRow]
) -> None:
    """``labels.json`` from the class descriptions, with each class's image count taken from `rows`."""
    counts = Counter(row["label"] for row in rows)
    labels = {str(index): {**info, "count": counts.get(index, 0)} for index, info in sorted(classes.items())}
    atomic_write_json(out_dir / LABELS_FILE, labels)


def summary(source: str, rows: Sequence[ManifestRow], **extra: Any) -> dict[str, Any]:
    """The small dict every source returns: image count, total bytes, class count, and extras."""
    labels = {row["label"] for row in rows if row["label"] is not None}
    return {
        "source": source,
        "images": len(rows),
        "bytes": sum(row["size"] for row in rows),
        "classes": len(labels) or None,
        **extra,
    }
