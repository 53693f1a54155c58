"""Flickr-Faces-HQ from its official metadata (``ffhq-dataset-v2.json`` of NVlabs/ffhq-dataset).

The metadata maps each image index (``"0"`` ... ``"69999"``) to a record whose ``thumbnail`` (128x128),
``image`` (aligned 1024x1024) and ``in_the_wild`` (the original photo) entries each give ``file_url``
(Google Drive), ``file_path``, ``file_size``, ``file_md5``, ``pixel_size`` and ``pixel_md5``; the
in-the-wild entry also has the 68 dlib ``face_landmarks`` the official alignment used. A file is
accepted only if its size and md5 match and its decoded pixels have the recorded size and pixel md5:
the md5 of the pixel array as numpy holds it (rows, columns, channels; uint8), as the official script
computes it.

Google Drive limits how often a file may be downloaded per day; `base_url` points at a mirror that
serves the same tree, ``{base_url}/{file_path}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.parse
from collections.abc import Mapping
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import PIL.Image

from pipeline.download.batch import FileSpec, download_files
from pipeline.download.http import ChecksumError, DownloadError, QuotaExceededError
from pipeline.download.manifest import (
    IMAGES_DIR,
    LANDMARKS_FILE,
    begin_output,
    describe_files,
    manifest_row,
    summary,
    write_manifest,
)
from pipeline.files import atomic_write_json, default_cache_dir

log = logging.getLogger(__name__)

METADATA_URL = "https://drive.google.com/uc?id=16N0RV4fHI6joBuKbQAoG34V_cQk7vxSA"
METADATA_FILE = "ffhq-dataset-v2.json"
METADATA_MD5 = "425ae20f06a4da1d4dc0f46d40ba5fd6"
METADATA_SIZE = 267_793_842
VARIANTS = {"thumbnails128": "thumbnail", "images1024": "image", "in_the_wild": "in_the_wild"}


def pixel_md5(image: PIL.Image.Image) -> str:
    """md5 of the image's pixels as a C-ordered numpy array, the ``pixel_md5`` of the metadata."""
    return hashlib.md5(np.ascontiguousarray(np.asarray(image)).tobytes()).hexdigest()


def check_pixels(path: Path, *, pixel_size: list[int] | None, pixel_md5_hex: str | None, name: str) -> None:
    """Raise :class:`ChecksumError` unless the image at `path` decodes to the recorded pixels."""
    try:
        with PIL.Image.open(path) as image:
            if pixel_size is not None and list(image.size) != list(pixel_size):
                raise ChecksumError(f"{name}: image size {list(image.size)}, expected {list(pixel_size)}")
            actual = pixel_md5(image) if pixel_md5_hex is not None else None
            if actual != pixel_md5_hex:
                raise ChecksumError(f"{name}: pixel md5 {actual}, expected {pixel_md5_hex}")
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise ChecksumError(f"{name}: cannot decode the image ({exc})") from exc


def download_ffhq(
    out_dir: str | os.PathLike[str],
    *,
    variant: str = "thumbnails128",
    metadata_url: str = METADATA_URL,
    metadata_md5: str | None = METADATA_MD5,
    base_url: str | None = None,
    max_images: int | None = None,
    workers: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Download the FFHQ `variant` (``thumbnails128``, ``images1024`` or ``in_the_wild``) into
    ``out_dir/images/<file_path>`` and write the manifest; for ``in_the_wild`` also ``landmarks.json``
    (``{file: 68x2 landmarks}``) for the align stage.

    metadata_md5: the expected md5 of the metadata JSON (None skips the check, for a modified copy).
    base_url: a mirror serving ``{base_url}/{file_path}``; None downloads from the metadata's URLs.
    max_images: the first N images by index; None for all 70,000.
    cache_dir: where the metadata JSON is kept between runs (default ``~/.cache/stylegan-pipeline/ffhq``).

    Files already in `out_dir` that pass the checks are kept; anything else under ``images/`` is removed,
    so the folder holds exactly the images of the manifest.
    """
    if variant not in VARIANTS:
        raise ValueError(f"data.ffhq.variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"data.ffhq.max_images must be positive, got {max_images}")
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir("ffhq")
    metadata = _load_metadata(
        metadata_url, metadata_md5, cache / METADATA_FILE, retries=retries, backoff=backoff, timeout=timeout
    )
    indices = sorted(metadata, key=int)[:max_images]
    begin_output(out_dir)

    entries = [_entry(metadata[index], variant, index) for index in indices]
    files = [f"{IMAGES_DIR}/{entry['file_path']}" for entry in entries]
    specs = [_file_spec(entry, out_dir / file, base_url) for entry, file in zip(entries, files, strict=True)]
    try:
        result = download_files(
            specs, workers=workers, retries=retries, backoff=backoff, timeout=timeout, desc=f"ffhq {variant}"
        )
    except QuotaExceededError as exc:
        name = exc.dest.relative_to(out_dir / IMAGES_DIR) if exc.dest else exc.url
        raise QuotaExceededError(
            f"Google Drive quota exceeded for {name}; use a mirror via data.ffhq.base_url",
            url=exc.url,
            dest=exc.dest,
        ) from exc
    removed = _remove_strays(out_dir / IMAGES_DIR, {out_dir / file for file in files})

    described = describe_files(out_dir, files, workers=workers)
    rows = [
        manifest_row(
            file, size, sha256, None, spec.url, ffhq_index=int(index), split=metadata[index].get("category")
        )
        for file, spec, index, (size, sha256) in zip(files, specs, indices, described, strict=True)
    ]
    write_manifest(out_dir, rows)
    if variant == "in_the_wild":
        landmarks = {file: entry["face_landmarks"] for file, entry in zip(files, entries, strict=True)}
        atomic_write_json(out_dir / LANDMARKS_FILE, landmarks)
    log.info(
        "ffhq %s: %d images (%d downloaded, %d already present, %d stray files removed)",
        variant,
        len(rows),
        result.downloaded,
        result.already_present,
        removed,
    )
    return summary(
        "ffhq",
        rows,
        variant=variant,
        downloaded=result.downloaded,
        already_present=result.already_present,
        bytes_downloaded=result.bytes_downloaded,
    )


def _load_metadata(
    url: str, md5: str | None, path: Path, *, retries: int, backoff: float, timeout: float
) -> dict[str, Any]:
    """The metadata JSON, downloaded to `path` unless a copy with the expected md5 is there already."""
    if md5 is None:  # nothing to verify a cached copy against: fetch it again
        path.unlink(missing_ok=True)
    spec = FileSpec(url, path, md5=md5, size=METADATA_SIZE if md5 == METADATA_MD5 else None)
    try:
        download_files(
            [spec], workers=1, retries=retries, backoff=backoff, timeout=timeout, desc="ffhq metadata"
        )
    except QuotaExceededError as exc:
        raise QuotaExceededError(
            f"Google Drive quota exceeded for {METADATA_FILE}; use a mirror via data.ffhq.metadata_url",
            url=url,
            dest=path,
        ) from exc
    log.info("reading the FFHQ metadata %s", path)
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DownloadError(f"the FFHQ metadata {path} (from {url}) is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict) or not all(str(key).isdigit() for key in metadata):
        raise DownloadError(
            f"the FFHQ metadata {path} (from {url}) is not a mapping of image index to record"
        )
    return metadata


def _entry(record: Mapping[str, Any], variant: str, index: str) -> Mapping[str, Any]:
    key = VARIANTS[variant]
    entry = record.get(key) if isinstance(record, Mapping) else None
    required = ("file_url", "file_path") + (("face_landmarks",) if variant == "in_the_wild" else ())
    if not isinstance(entry, Mapping) or any(name not in entry for name in required):
        raise DownloadError(f"FFHQ metadata record {index!r} has no {key!r} entry with {', '.join(required)}")
    file_path = PurePosixPath(entry["file_path"])
    if file_path.is_absolute() or ".." in file_path.parts:
        raise DownloadError(
            f"FFHQ metadata record {index!r}: file_path {str(file_path)!r} leaves the data folder"
        )
    return entry


def _file_spec(entry: Mapping[str, Any], dest: Path, base_url: str | None) -> FileSpec:
    if base_url:
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(entry['file_path'])}"
    else:
        url = entry["file_url"]
    validate = partial(
        check_pixels,
        pixel_size=entry.get("pixel_size"),
        pixel_md5_hex=entry.get("pixel_md5"),
        name=entry["file_path"],
    )
    has_pixel_check = "pixel_size" in entry or "pixel_md5" in entry
    return FileSpec(
        url,
        dest,
        size=entry.get("file_size"),
        md5=entry.get("file_md5"),
        validate=validate if has_pixel_check else None,
    )


def _remove_strays(images_dir: Path, keep: set[Path]) -> int:
    """Delete files under `images_dir` that are not in `keep` (other variants, partial downloads)."""
    removed = 0
    for path in sorted(images_dir.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed
