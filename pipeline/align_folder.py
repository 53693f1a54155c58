"""Align a folder of raw images in parallel: the work behind the ``align`` stage.

Each raw image becomes zero, one or several aligned PNGs under ``out_dir/images/``, named after their
source (``<subdir>/<stem>_<face_index>.png``). ``out_dir/manifest.jsonl`` lists the outputs and
``out_dir/skipped.jsonl`` every input that produced none, with the reason. Both follow the order of the
raw manifest, and every output depends only on its source, so the result is the same for any number of
workers.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import PIL.Image
from tqdm import tqdm

from pipeline.align import align_ffhq, face_size
from pipeline.faces import detect_landmarks, load_models
from pipeline.files import write_jsonl
from pipeline.images import RESIZE_FILTERS, BadImageError, load_pil_rgb, resize_square
from pipeline.workers import process_map
from stylegan.files import atomic_path

log = logging.getLogger(__name__)

Method = Literal["ffhq", "center_crop", "none"]
FaceSelection = Literal["largest", "all"]

IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.jsonl"
SKIPPED_FILE = "skipped.jsonl"
#: zlib level of the aligned PNGs: at 1024 px, level 3 writes 3x faster than PIL's default 6 for
#: files about 12% larger, and these are intermediate files that the prepare stage re-encodes.
PNG_COMPRESS_LEVEL = 3


@dataclass(frozen=True)
class AlignConfig:
    """How every image is aligned; see :func:`align_folder` for the meaning of each field."""

    method: Method
    output_size: int
    faces: FaceSelection = "largest"
    min_face_size: float = 0
    transform_size: int | None = None
    resize_filter: str = "lanczos"
    detector_upsample: int = 1

    def __post_init__(self) -> None:
        if self.method not in ("ffhq", "center_crop", "none"):
            raise ValueError(f"method must be 'ffhq', 'center_crop' or 'none', got {self.method!r}")
        if self.faces not in ("largest", "all"):
            raise ValueError(f"faces must be 'largest' or 'all', got {self.faces!r}")
        if self.output_size < 1:
            raise ValueError(f"output_size must be positive, got {self.output_size}")
        if self.transform_size is not None and self.transform_size < self.output_size:
            raise ValueError(
                f"transform_size ({self.transform_size}) must be at least output_size ({self.output_size})"
            )
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0, got {self.min_face_size}")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(
                f"unknown resize_filter {self.resize_filter!r}; choose one of {sorted(RESIZE_FILTERS)}"
            )
        if self.detector_upsample < 0:
            raise ValueError(f"detector_upsample must be >= 0, got {self.detector_upsample}")


@dataclass(frozen=True)
class AlignSummary:
    """Counts of one :func:`align_folder` run; `skip_reasons` maps each reason to its number of files."""

    images: int
    outputs: int
    skipped: int
    skip_reasons: dict[str, int]


@dataclass(frozen=True)
class _Task:
    source: str  # path relative to the raw folder
    stem: str  # output path relative to images/, without "_<face_index>.png"
    landmarks: list[np.ndarray] | None  # given faces (FFHQ metadata), or None to detect


@dataclass(frozen=True)
class _Outcome:
    faces: list[tuple[int, str]]  # (face_index, output file relative to out_dir)
    skip_reason: str | None = None


class NoFaceError(Exception):
    """The image has no face to align (none found, or none as large as asked)."""


def select_faces(landmarks: list[np.ndarray], faces: FaceSelection, min_face_size: float) -> list[int]:
    """Indices of the faces to align, from landmarks ordered largest first.

    Size is :func:`pipeline.align.face_size`: the side of the FFHQ crop square in source pixels.
    """
    if not landmarks:
        raise NoFaceError("no face detected")
    sizes = [face_size(lm) for lm in landmarks]
    chosen = [0] if faces == "largest" else range(len(landmarks))
    kept = [i for i in chosen if sizes[i] >= min_face_size]
    if not kept:
        raise NoFaceError(f"no face of min_face_size {min_face_size:g} px or larger")
    return kept


def align_image(
    image: PIL.Image.Image, config: AlignConfig, landmarks: list[np.ndarray] | None = None
) -> dict[int, PIL.Image.Image]:
    """The aligned outputs of one RGB image, keyed by face index (0 for the methods without faces).

    Raises :class:`NoFaceError` when there is no face to align.
    """
    if config.method == "none":
        return {0: image}
    if config.method == "center_crop":
        return {0: resize_square(image, config.output_size, config.resize_filter)}
    if landmarks is None:
        landmarks = detect_landmarks(np.asarray(image), config.detector_upsample)
    indices = select_faces(landmarks, config.faces, config.min_face_size)
    return {i: align_ffhq(image, landmarks[i], config.output_size, config.transform_size) for i in indices}


def _save_png(image: PIL.Image.Image, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a truncated PNG behind."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _process(task: _Task, config: AlignConfig, raw_dir: Path, out_dir: Path) -> _Outcome:
    try:
        image = load_pil_rgb(raw_dir / task.source)
        aligned = align_image(image, config, task.landmarks)
    except BadImageError as exc:
        return _Outcome([], exc.reason)
    except NoFaceError as exc:
        return _Outcome([], str(exc))
    except Exception as exc:
        raise RuntimeError(f"aligning {raw_dir / task.source} failed: {exc}") from exc
    faces = []
    for index, face in aligned.items():
        file = f"{IMAGES_DIR}/{task.stem}_{index}.png"
        _save_png(face, out_dir / file)
        faces.append((index, file))
    return _Outcome(faces)


def _output_stems(sources: Sequence[str]) -> list[str]:
    """``<subdir>/<stem>`` for each source (the raw folder's own ``images/`` level dropped); sources
    sharing a stem in one folder keep their suffix."""
    paths = [PurePosixPath(s) for s in sources]
    paths = [p.relative_to(IMAGES_DIR) if p.parts[0] == IMAGES_DIR else p for p in paths]
    per_stem = Counter((p.parent, p.stem) for p in paths)
    stems = [str(p.parent / (p.stem if per_stem[p.parent, p.stem] == 1 else p.name)) for p in paths]
    clashes = [s for s, n in Counter(stems).items() if n > 1]
    if clashes:
        raise ValueError(f"raw files whose aligned names would clash: {clashes[:5]}")
    return stems


def _check_source(row: Mapping[str, Any], line: int) -> str:
    source = row.get("file")
    if not isinstance(source, str) or not source:
        raise ValueError(f"raw manifest row {line} has no 'file': {dict(row)}")
    path = PurePosixPath(source)
    if path.is_absolute() or ".." in path.parts or "\\" in source:
        raise ValueError(
            f"raw manifest row {line}: file {source!r} must be a relative path inside the raw folder"
        )
    return source


def _face_list(source: str, value: Any) -> list[np.ndarray]:
    """One face (68x2) or several (Nx68x2) from the landmarks mapping, largest face first."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape == (68, 2):
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (68, 2) or not np.isfinite(array).all():
        raise ValueError(
            f"landmarks for {source!r} must be 68x2 or Nx68x2 finite numbers, got shape {array.shape}"
        )
    return sorted(array, key=face_size, reverse=True)


def _make_tasks(
    rows: Sequence[Mapping[str, Any]], landmarks: Mapping[str, Any] | None
) -> tuple[list[_Task], list[Any]]:
    sources = [_check_source(row, i) for i, row in enumerate(rows)]
    duplicates = [s for s, n in Counter(sources).items() if n > 1]
    if duplicates:
        raise ValueError(f"raw manifest lists these files more than once: {duplicates[:5]}")
    landmarks = landmarks or {}
    unmatched = set(landmarks) - set(sources)
    if unmatched:
        log.warning("%d landmark entries match no raw file, e.g. %r", len(unmatched), sorted(unmatched)[0])
    tasks = [
        _Task(source, stem, _face_list(source, landmarks[source]) if source in landmarks else None)
        for source, stem in zip(sources, _output_stems(sources), strict=True)
    ]
    labels = [row.get("label") for row in rows]
    return tasks, labels


def _run(
    tasks: list[_Task], work: Callable[[_Task], _Outcome], workers: int, needs_dlib: bool
) -> Iterator[tuple[int, _Outcome]]:
    """(task index, outcome) pairs as they finish, from a process pool or, for one worker, this process."""
    indexed = partial(_indexed, work)
    if workers <= 1:
        yield from map(indexed, enumerate(tasks))
        return
    # Spawned workers that cannot start raise WorkerPoolError (multiprocessing.Pool would hang).
    initializer = load_models if needs_dlib else None
    yield from process_map(indexed, enumerate(tasks), workers, ordered=False, initializer=initializer,
                           what="the align stage")  # fmt: skip


def _indexed(work: Callable[[_Task], _Outcome], item: tuple[int, _Task]) -> tuple[int, _Outcome]:
    index, task = item
    return index, work(task)


def align_folder(
    raw_dir: str | os.PathLike[str],
    raw_manifest_rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    method: Method,
    output_size: int,
    faces: FaceSelection = "largest",
    min_face_size: float = 0,
    transform_size: int | None = None,
    resize_filter: str = "lanczos",
    detector_upsample: int = 1,
    workers: int | None = None,
    landmarks: Mapping[str, Any] | None = None,
) -> AlignSummary:
    """Align every image listed in `raw_manifest_rows` (dicts with ``file``, relative to `raw_dir`, and
    ``label``) into `out_dir`, which is cleared of a previous run's outputs first.

    method: ``"ffhq"`` (dlib landmarks + FFHQ alignment), ``"center_crop"`` (largest centred square,
        resized with `resize_filter`) or ``"none"`` (the image as it is, as an RGB PNG).
    faces: ``"largest"`` aligns the largest face of each photo, ``"all"`` every face. Either way a face
        whose FFHQ crop square is narrower than `min_face_size` source pixels is left out, and a photo
        left with no face is skipped.
    landmarks: optional ``{file: 68x2 or Nx68x2}`` to use instead of detection (FFHQ metadata's
        ``in_the_wild.face_landmarks``); files missing from it are detected.
    workers: processes to use; None means every core.

    Inputs that cannot be read or yield no face are listed in ``skipped.jsonl``; they never stop the run.
    """
    config = AlignConfig(
        method, output_size, faces, min_face_size, transform_size, resize_filter, detector_upsample
    )
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    tasks, labels = _make_tasks(raw_manifest_rows, landmarks)
    workers = min(workers or os.cpu_count() or 1, max(len(tasks), 1))

    shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)
    (out_dir / IMAGES_DIR).mkdir(parents=True)
    needs_dlib = method == "ffhq" and any(task.landmarks is None for task in tasks)
    work = partial(_process, config=config, raw_dir=raw_dir, out_dir=out_dir)
    outcomes: list[_Outcome | None] = [None] * len(tasks)
    progress = tqdm(
        total=len(tasks), desc=f"align ({method}, {workers} workers)", unit="img", dynamic_ncols=True
    )
    with progress:
        for index, outcome in _run(tasks, work, workers, needs_dlib):
            outcomes[index] = outcome
            progress.update()

    manifest, skipped = [], []
    for task, label, outcome in zip(tasks, labels, outcomes, strict=True):
        assert outcome is not None
        if outcome.skip_reason is not None:
            skipped.append({"file": task.source, "reason": outcome.skip_reason})
        for face_index, file in outcome.faces:
            manifest.append({"file": file, "source": task.source, "label": label, "face_index": face_index})
    write_jsonl(out_dir / MANIFEST_FILE, manifest)
    write_jsonl(out_dir / SKIPPED_FILE, skipped)
    summary = AlignSummary(
        images=len(tasks),
        outputs=len(manifest),
        skipped=len(skipped),
        skip_reasons=dict(Counter(row["reason"] for row in skipped)),
    )
    log.info(
        "aligned %d images into %d outputs, skipped %d", summary.images, summary.outputs, summary.skipped
    )
    return summary
