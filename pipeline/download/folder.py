"""The user's own images: a folder, searched recursively, copied (or hard-linked) into
``out_dir/images/`` with its relative paths. Whether each file is a readable image is for the align and
prepare stages to judge; here only the extension counts."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.download.http import DownloadError
from pipeline.download.manifest import (
    IMAGE_EXTENSIONS,
    IMAGES_DIR,
    begin_output,
    describe_files,
    manifest_row,
    summary,
    write_labels,
    write_manifest,
)

log = logging.getLogger(__name__)


def find_images(root: Path) -> list[Path]:
    """Image files under `root` (by extension, any case), as paths relative to `root`, sorted. Hidden
    files and folders (``.git``, macOS's ``._IMG_0001.jpg`` resource forks) are left out."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(relative)
    return sorted(found, key=lambda p: p.as_posix())


def import_folder(
    out_dir: str | os.PathLike[str],
    *,
    path: str | os.PathLike[str] | None,
    labels_from_subdirs: bool = False,
    link: bool = False,
) -> dict[str, Any]:
    """Bring the images under `path` into `out_dir`.

    labels_from_subdirs: each image's label is its top-level subfolder, classes numbered in name order;
        every image must then be inside one.
    link: hard-link instead of copying where the filesystem allows (same device), else copy. Off by
        default: DVC makes the files it caches read-only, and a hard link shares its permissions with
        the user's original.
    """
    if path is None or str(path) == "":
        raise DownloadError("data.folder.path is not set: name the folder of images to use")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DownloadError(
            f"data.folder.path {str(root)!r} is not a folder (it does not exist or is a file)"
        )
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(root.resolve()):
        raise DownloadError(f"the output folder {str(out_dir)!r} lies inside data.folder.path {str(root)!r}")
    sources = find_images(root)
    if not sources:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DownloadError(f"data.folder.path {str(root)!r} holds no image files ({extensions})")

    classes: dict[str, int] = {}
    if labels_from_subdirs:
        loose = [source.as_posix() for source in sources if len(source.parts) == 1]
        if loose:
            raise DownloadError(
                f"data.folder.labels_from_subdirs is true but {len(loose)} images in {str(root)!r} are in no "
                f"subfolder (a subfolder is a class), e.g. {loose[:3]}"
            )
        classes = {name: index for index, name in enumerate(sorted({s.parts[0] for s in sources}))}

    begin_output(out_dir)
    shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)
    files = [f"{IMAGES_DIR}/{source.as_posix()}" for source in sources]
    linked = 0
    for source, file in zip(tqdm(sources, desc="import folder", unit="file"), files, strict=True):
        linked += _link_or_copy(root / source, out_dir / file, link)
    described = describe_files(out_dir, files)
    rows = [
        manifest_row(
            file,
            size,
            sha256,
            classes[source.parts[0]] if labels_from_subdirs else None,
            None,
            source=str(root / source),
        )
        for source, file, (size, sha256) in zip(sources, files, described, strict=True)
    ]
    write_manifest(out_dir, rows)
    if labels_from_subdirs:
        write_labels(out_dir, {index: {"name": name} for name, index in classes.items()}, rows)
    log.info("imported %d images from %s (%d hard-linked)", len(rows), root, linked)
    return summary("folder", rows, classes=len(classes) or None, linked=linked, copied=len(rows) - linked)


def _link_or_copy(source: Path, dest: Path, link: bool) -> bool:
    """Hard-link `source` to `dest` if asked and possible, else copy it; True if it was linked."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, dest)
            return True
        except OSError:  # another device, a filesystem without hard links, no permission
            pass
    shutil.copyfile(source, dest)
    return False
