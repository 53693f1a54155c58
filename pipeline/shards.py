"""The ``prepare`` step: aligned images -> square, resized PNGs in WebDataset tar shards.

Output layout of `out_dir`::

    shard-000000.tar ...   samples ``<key>.png`` (RGB), ``<key>.cls`` (decimal label, when the data set
                           has labels) and ``<key>.json`` ({"file": ..., "source": ...}: where it came from)
    index.json             format, resolution, channels, count, labels and every shard's name, count,
                           sha256 and size: what :class:`stylegan.dataset.ShardDataset` reads
    stats.json             count, per-channel mean and std of the pixels in [0, 1], label histogram
    skipped.jsonl          {"file", "reason"} for every input that could not be used

Keys are zero-padded positions in the manifest order of the images that were kept. Every byte of the
output depends only on the inputs and the settings (tar headers carry no time, owner or permissions
of the machine; PNGs are encoded with fixed settings), so the same inputs give identical shards for
any number of workers.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import PIL.Image
import PIL.ImageOps
from tqdm import tqdm

from pipeline.files import atomic_write_json, file_digest, read_jsonl, write_jsonl
from pipeline.images import RESIZE_FILTERS, BadImageError, load_pil_rgb, resize_square
from pipeline.usable_images import NoUsableImagesError, count_reasons
from pipeline.workers import process_map
from stylegan.files import atomic_path

__all__ = [
    "INDEX_FILE",
    "SKIPPED_FILE",
    "STATS_FILE",
    "PrepareSummary",
    "ShardInfo",
    "ShardWriter",
    "prepare_shards",
    "square_image",
]

log = logging.getLogger(__name__)

Crop = Literal["center", "pad"]

INDEX_FILE = "index.json"
STATS_FILE = "stats.json"
SKIPPED_FILE = "skipped.jsonl"
SHARD_NAME = "shard-{:06d}.tar"
KEY_DIGITS = 8
PNG_COMPRESS_LEVEL = 6
INDEX_VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    name: str
    count: int
    sha256: str
    bytes: int


@dataclass(frozen=True)
class PrepareSummary:
    count: int  # images written
    skipped: int
    skip_reasons: dict[str, int]
    upscaled: int  # images whose shorter side was below the resolution
    shards: list[ShardInfo]
    num_classes: int  # 0 without labels


class ShardWriter:
    """Writes samples into numbered tar shards of `shard_size` samples, with reproducible bytes.

    Every member gets mtime 0, uid/gid 0, no user or group name and mode 0644, in the POSIX ustar
    format. Each shard is written under a temporary name and renamed when complete (see
    :func:`stylegan.files.atomic_path`: a full disk raises :class:`~stylegan.files.DiskFullError` naming
    the shard, and leaves the shards finished before it).
    """

    def __init__(self, out_dir: str | os.PathLike[str], shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._file = ExitStack()  # the shard's atomic_path
        self._in_shard = 0

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        """Add one sample: ``{extension: payload}`` becomes members ``<key>.<extension>``, in that order."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        if self._tar is None:
            self._open()
        assert self._tar is not None
        for extension, payload in members.items():
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size = len(payload)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(payload))
        self._in_shard += 1
        if self._in_shard == self.shard_size:
            self._finish()

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard written."""
        if self._tar is not None:
            self._finish()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        elif self._tar is not None:
            try:
                self._tar.close()
            except OSError:  # e.g. no space for the end-of-archive blocks either: the shard goes anyway
                pass
            self._tar = None
            self._file.__exit__(*exc_info)  # removes the partial shard (a full disk: DiskFullError)

    def _shard_path(self) -> Path:
        return self.out_dir / SHARD_NAME.format(len(self.shards))

    def _open(self) -> None:
        temporary = self._file.enter_context(atomic_path(self._shard_path()))
        self._tar = tarfile.open(temporary, "w", format=tarfile.USTAR_FORMAT)
        self._in_shard = 0

    def _finish(self) -> None:
        assert self._tar is not None
        tar, self._tar = self._tar, None
        with self._file:  # then fsync and rename; on an error the partial shard is removed
            tar.close()
        path = self._shard_path()
        self.shards.append(ShardInfo(path.name, self._in_shard, file_digest(path), path.stat().st_size))
        self._tar = None


def square_image(
    image: PIL.Image.Image, resolution: int, filter: str = "lanczos", crop: Crop = "center"
) -> PIL.Image.Image:
    """Make `image` a `resolution` x `resolution` square: ``crop="center"`` cuts the centred square of the
    shorter side; ``crop="pad"`` keeps everything and pads the shorter side with black, centred."""
    if crop == "center":
        return resize_square(image, resolution, filter)
    if crop == "pad":
        return PIL.ImageOps.pad(image, (resolution, resolution), RESIZE_FILTERS[filter], color=(0, 0, 0))
    raise ValueError(f"crop must be 'center' or 'pad', got {crop!r}")


def prepare_shards(
    aligned_dir: str | os.PathLike[str],
    manifest_rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    resolution: int,
    filter: str = "lanczos",
    crop: Crop = "center",
    shard_size: int = 1000,
    workers: int | None = None,
) -> PrepareSummary:
    """Resize every image listed in `manifest_rows` and write shards, index, stats and skipped list.

    manifest_rows: dicts with ``file`` (relative to `aligned_dir`) and ``label`` (a class index or
        None; either every row has one or none does). An optional ``source`` is kept as metadata.
    resolution: output side, a power of two >= 4.
    filter: resampling filter, one of :data:`pipeline.images.RESIZE_FILTERS` (``"box"`` to downscale
        FFHQ by a power of two, as the StyleGAN2-ADA paper did).
    workers: processes to decode and encode with; None means every core.

    Images that cannot be read are listed in ``skipped.jsonl`` and never stop the run; a run where
    nothing is left raises :class:`~pipeline.usable_images.NoUsableImagesError` (a ValueError) naming
    the file with the reasons: this stage's, or the align stage's ``aligned_dir/skipped.jsonl`` when no
    image reached this stage. Previous shards in `out_dir` are removed first.
    """
    _check_settings(resolution, filter, crop, shard_size, workers)
    aligned_dir, out_dir = Path(aligned_dir), Path(out_dir)
    files, labels = _check_rows(manifest_rows)
    num_classes = max(labels) + 1 if labels else 0
    workers = min(workers or os.cpu_count() or 1, max(len(files), 1))

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("shard-*.tar"), *out_dir.glob("*shard-*.tmp")]:
        stale.unlink()
    for name in (INDEX_FILE, STATS_FILE, SKIPPED_FILE):
        (out_dir / name).unlink(missing_ok=True)

    work = partial(_prepare_one, aligned_dir=aligned_dir, resolution=resolution, filter=filter, crop=crop)
    moments = _PixelMoments()
    histogram = np.zeros(num_classes, dtype=np.int64)
    skipped: list[dict[str, str]] = []
    upscaled = 0
    progress = tqdm(
        total=len(files), desc=f"prepare {resolution}px ({workers} workers)", unit="img", dynamic_ncols=True
    )
    with progress, ShardWriter(out_dir, shard_size) as writer:
        for position, outcome in enumerate(_run(work, files, workers)):
            progress.update()
            if isinstance(outcome, str):
                skipped.append({"file": files[position], "reason": outcome})
                continue
            png, sums, upscale = outcome
            label = labels[position] if labels else None
            writer.write(f"{moments.count:0{KEY_DIGITS}d}", _members(png, label, manifest_rows[position]))
            moments.add(sums)
            upscaled += upscale
            if label is not None:
                histogram[label] += 1
        shards = writer.close()

    write_jsonl(out_dir / SKIPPED_FILE, skipped)
    if moments.count == 0:
        upstream = aligned_dir / SKIPPED_FILE
        if not files and upstream.is_file():  # the align stage kept nothing: its file says why
            dropped = read_jsonl(upstream)
            raise NoUsableImagesError(len(dropped), upstream, count_reasons(dropped))
        kinds = [{"reason": _reason_kind(row["reason"])} for row in skipped]
        raise NoUsableImagesError(len(files), out_dir / SKIPPED_FILE, count_reasons(kinds))
    label_counts = histogram.tolist() if labels else None
    mean, std = moments.mean_std()
    stats = {"count": moments.count, "mean": mean, "std": std, "label_histogram": label_counts}
    atomic_write_json(out_dir / STATS_FILE, stats)
    settings = {"resolution": resolution, "filter": filter, "crop": crop, "shard_size": shard_size}
    index = _index(settings, moments.count, shards, num_classes, label_counts)
    atomic_write_json(out_dir / INDEX_FILE, index)  # last: its presence marks a complete output

    summary = PrepareSummary(
        count=moments.count,
        skipped=len(skipped),
        skip_reasons=dict(Counter(_reason_kind(row["reason"]) for row in skipped)),
        upscaled=upscaled,
        shards=shards,
        num_classes=num_classes,
    )
    log.info(
        "wrote %d images in %d shards to %s; skipped %d %s",
        summary.count,
        len(shards),
        out_dir,
        summary.skipped,
        summary.skip_reasons or "",
    )
    if upscaled:
        log.warning("%d images were smaller than %dpx and were upscaled", upscaled, resolution)
    return summary


# --- internals -------------------------------------------------------------------------------------


def _check_settings(resolution: int, filter: str, crop: str, shard_size: int, workers: int | None) -> None:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    if filter not in RESIZE_FILTERS:
        raise ValueError(f"unknown resize filter {filter!r}; choose one of {sorted(RESIZE_FILTERS)}")
    if crop not in ("center", "pad"):
        raise ValueError(f"crop must be 'center' or 'pad', got {crop!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")


def _members(png: bytes, label: int | None, row: Mapping[str, Any]) -> dict[str, bytes]:
    """The tar members of one sample: image, label when there is one, and where it came from."""
    members = {"png": png}
    if label is not None:
        members["cls"] = str(label).encode()
    metadata = {"file": row["file"]}
    if row.get("source") is not None:
        metadata["source"] = str(row["source"])
    members["json"] = json.dumps(metadata, sort_keys=True).encode()
    return members


def _index(
    settings: dict[str, Any],
    count: int,
    shards: list[ShardInfo],
    num_classes: int,
    label_counts: list[int] | None,
) -> dict[str, Any]:
    labels: dict[str, Any] = {"has_labels": label_counts is not None, "num_classes": num_classes}
    if label_counts is not None:
        labels["counts"] = label_counts
    return {
        "format": "webdataset",
        "version": INDEX_VERSION,
        "image_extension": "png",
        "channels": 3,
        "count": count,
        **settings,
        "labels": labels,
        "shards": [asdict(shard) for shard in shards],
    }


class _PixelMoments:
    """Exact per-channel sums of 8-bit values and their squares (Python ints: no rounding, so the
    result does not depend on the order images arrive in)."""

    def __init__(self) -> None:
        self.count = 0
        self.pixels = 0
        self.sums = [0, 0, 0]
        self.squares = [0, 0, 0]

    def add(self, image_sums: tuple[int, list[int], list[int]]) -> None:
        pixels, sums, squares = image_sums
        self.count += 1
        self.pixels += pixels
        self.sums = [a + b for a, b in zip(self.sums, sums, strict=True)]
        self.squares = [a + b for a, b in zip(self.squares, squares, strict=True)]

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and (population) standard deviation of each channel, in [0, 1] units."""
        n = self.pixels
        mean = [s / (n * 255) for s in self.sums]
        # n * sum(x^2) - sum(x)^2 computed exactly in integers, then scaled.
        pairs = zip(self.sums, self.squares, strict=True)
        std = [math.sqrt((n * q - s * s) / (n * n * 255 * 255)) for s, q in pairs]
        return mean, std


_Outcome = tuple[bytes, tuple[int, list[int], list[int]], bool] | str


def _prepare_one(file: str, *, aligned_dir: Path, resolution: int, filter: str, crop: Crop) -> _Outcome:
    """PNG bytes, pixel sums and whether it was upscaled; or the reason the file was skipped."""
    try:
        image = load_pil_rgb(aligned_dir / file)
    except BadImageError as exc:
        return exc.reason
    upscaled = min(image.size) < resolution
    image = square_image(image, resolution, filter, crop)
    pixels = np.asarray(image).reshape(-1, 3).astype(np.int64)
    sums = (len(pixels), pixels.sum(axis=0).tolist(), (pixels * pixels).sum(axis=0).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue(), sums, upscaled


def _run(work: partial, files: list[str], workers: int) -> Iterator[_Outcome]:
    """Outcomes in the order of `files`, from a process pool or, for one worker, this process."""
    if workers <= 1:
        yield from map(work, files)
        return
    # Spawned workers that cannot start raise WorkerPoolError (multiprocessing.Pool would hang).
    chunksize = max(1, min(32, len(files) // (workers * 8)))
    yield from process_map(work, files, workers, chunksize=chunksize, what="the prepare stage")


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[int]]:
    """The files, and the labels (empty when the data set has none), of validated manifest rows."""
    files: list[str] = []
    labels: list[int] = []
    unlabelled: str | None = None
    for number, row in enumerate(rows):
        file = row.get("file")
        if not isinstance(file, str) or not file:
            raise ValueError(f"manifest row {number} has no 'file': {dict(row)}")
        path = PurePosixPath(file)
        if path.is_absolute() or ".." in path.parts or "\\" in file:
            raise ValueError(f"manifest row {number}: file {file!r} must be a relative path without '..'")
        files.append(file)
        label = row.get("label")
        if label is None:
            unlabelled = unlabelled or file
            continue
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise ValueError(f"manifest row {number} ({file}): label must be an integer >= 0, got {label!r}")
        labels.append(label)
    if labels and unlabelled is not None:
        raise ValueError(f"some manifest rows have labels and some do not, e.g. {unlabelled!r} has none")
    duplicates = [f for f, n in Counter(files).items() if n > 1]
    if duplicates:
        raise ValueError(f"manifest lists these files more than once: {duplicates[:5]}")
    return files, labels


def _reason_kind(reason: str) -> str:
    """The reason without its details in parentheses, to count skips by kind."""
    return reason.split(" (", 1)[0]
