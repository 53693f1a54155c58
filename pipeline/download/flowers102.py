"""Oxford 102 Category Flower (Nilsback & Zisserman, 2008) from the VGG web site.

Three files: ``102flowers.tgz`` (8,189 JPEGs, ``jpg/image_00001.jpg`` ...), ``imagelabels.mat``
(``labels``: the class, 1 to 102, of image i at position i-1) and ``setid.mat`` (``trnid``, ``valid``,
``tstid``: the 1-based image ids of the train, validation and test splits). They are md5-checked,
kept in a cache folder between runs, and the archive is extracted with every member checked first:
only regular files and folders, none outside the target. Labels are 0-based in the manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import scipy.io
from tqdm import tqdm

from pipeline.download.batch import FileSpec, download_files
from pipeline.download.http import DownloadError
from pipeline.download.manifest import (
    IMAGES_DIR,
    begin_output,
    describe_files,
    manifest_row,
    summary,
    write_labels,
    write_manifest,
)
from pipeline.files import default_cache_dir

log = logging.getLogger(__name__)

BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102"
ARCHIVE, LABELS, SETID = "102flowers.tgz", "imagelabels.mat", "setid.mat"
MD5S = {  # as published with the data set (and listed by torchvision's Flowers102)
    ARCHIVE: "52808999861908f626f3c1f4e79d11fa",
    LABELS: "e0620be6f572b9609742df49c70aed4d",
    SETID: "a5357ecc9cb78c4bef273ce3793fc85c",
}
SPLITS = {"trnid": "train", "valid": "val", "tstid": "test"}


def download_flowers102(
    out_dir: str | os.PathLike[str],
    *,
    base_url: str = BASE_URL,
    md5s: Mapping[str, str | None] | None = None,
    workers: int = 3,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Download, verify and extract Oxford Flowers 102 into ``out_dir/images/jpg/`` with its labels.

    md5s: expected md5 per file name (default: the published ones; None for a file skips its check).
    cache_dir: where the three files are kept (default ``~/.cache/stylegan-pipeline/flowers102``).
    """
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir("flowers102")
    expected = {**MD5S, **(md5s or {})}
    specs = [FileSpec(f"{base_url.rstrip('/')}/{name}", cache / name, md5=expected[name]) for name in MD5S]
    result = download_files(
        specs, workers=workers, retries=retries, backoff=backoff, timeout=timeout, desc="flowers102"
    )
    labels = read_labels(cache / LABELS)
    splits = read_splits(cache / SETID, len(labels))

    begin_output(out_dir)
    images_dir = out_dir / IMAGES_DIR
    shutil.rmtree(images_dir, ignore_errors=True)
    extracted = set(safe_extract(cache / ARCHIVE, images_dir))
    members = [f"jpg/image_{image_id:05d}.jpg" for image_id in range(1, len(labels) + 1)]
    missing = [member for member in members if member not in extracted]
    if missing:
        raise DownloadError(
            f"{cache / ARCHIVE} lacks {len(missing)} of the {len(labels)} labelled images, e.g. {missing[:3]}"
        )

    files = [f"{IMAGES_DIR}/{member}" for member in members]
    archive_url = specs[0].url
    rows = [
        manifest_row(
            file, size, sha256, int(label) - 1, archive_url, member=member, image_id=i + 1, split=splits[i]
        )
        for i, (file, member, label, (size, sha256)) in enumerate(
            zip(files, members, labels, describe_files(out_dir, files), strict=True)
        )
    ]
    write_manifest(out_dir, rows)
    classes = {k: {"name": f"class_{k + 1:03d}", "original_label": k + 1} for k in range(int(labels.max()))}
    write_labels(out_dir, classes, rows)
    split_counts = dict(Counter(split for split in splits if split is not None))
    log.info("flowers102: %d images in %d classes, splits %s", len(rows), len(classes), split_counts)
    return summary(
        "flowers102",
        rows,
        classes=len(classes),
        splits=split_counts,
        downloaded=result.downloaded,
        already_present=result.already_present,
    )


def read_labels(path: Path) -> np.ndarray:
    """The 1-based class of each image, from ``imagelabels.mat``."""
    values = np.atleast_1d(_load_mat(path).get("labels", np.empty(0))).ravel()
    if values.size == 0 or not np.all(values == np.round(values)) or values.min() < 1:
        raise DownloadError(f"{path}: 'labels' must be a non-empty array of class numbers from 1")
    return values.astype(np.int64)


def read_splits(path: Path, num_images: int) -> list[str | None]:
    """The split (train, val, test) of each image, from ``setid.mat``; None where none lists it."""
    mat = _load_mat(path)
    splits: list[str | None] = [None] * num_images
    for key, split in SPLITS.items():
        if key not in mat:
            raise DownloadError(f"{path} has no {key!r} array")
        for image_id in np.atleast_1d(mat[key]).ravel().astype(np.int64):
            if not 1 <= image_id <= num_images:
                raise DownloadError(f"{path}: {key} lists image {image_id}, outside 1..{num_images}")
            if splits[image_id - 1] is not None:
                raise DownloadError(f"{path}: image {image_id} is in more than one split")
            splits[image_id - 1] = split
    return splits


def _load_mat(path: Path) -> dict[str, Any]:
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except (ValueError, OSError, TypeError) as exc:
        raise DownloadError(f"{path} is not a readable MATLAB file: {exc}") from exc


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract `archive` into `dest` and return the names of its files. Every member is checked before
    anything is written: a link, a device, an absolute path or one that climbs out with ``..`` stops
    the extraction with an error naming it. Extraction also runs with tarfile's ``data`` filter."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            for member in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                tar.extract(member, dest, filter="data")
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive} is not a readable tar archive: {exc}") from exc
    return [PurePosixPath(member.name).as_posix() for member in members if member.isfile()]


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise DownloadError(
            f"{archive}: refusing to extract {member.name!r}, a path outside the target folder"
        )
    if not (member.isfile() or member.isdir()):
        raise DownloadError(
            f"{archive}: refusing to extract {member.name!r}, which is not a regular file or folder "
            "(a link or a device)"
        )
