"""Downloading many files in parallel, resuming a previous run.

Files already present are verified first (size and checksums, or the content check where there are
none): good ones are kept, bad ones downloaded again. The rest download on a thread pool behind one
progress bar that shows bytes, rate and ETA.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.download.http import ChecksumError, Validator, check_file, download_file, partial_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch and what it must be."""

    url: str
    dest: Path
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    validate: Validator | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BatchResult:
    downloaded: int
    already_present: int
    bytes_downloaded: int


def is_complete(spec: FileSpec) -> bool:
    """Whether `spec.dest` exists and is the expected file. Checksums decide when there are any; the
    content check (slower: it may decode the image) only when there are none."""
    if not spec.dest.is_file():
        return False
    if check_file(spec.dest, size=spec.size, md5=spec.md5, sha256=spec.sha256) is not None:
        return False
    if spec.validate is not None and not (spec.md5 or spec.sha256):
        try:
            spec.validate(spec.dest)
        except ChecksumError:
            return False
    return True


class _ByteProgress:
    """A thread-safe byte counter on a tqdm bar (tqdm prints rate and ETA from it)."""

    def __init__(self, total: int | None, initial: int, desc: str) -> None:
        self._lock = threading.Lock()
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            dynamic_ncols=True,
        )
        self.received = 0  # net bytes added in this run

    def __call__(self, n: int) -> None:
        with self._lock:
            self.received += n
            self.bar.update(n)

    def file_done(self, done: int, total: int) -> None:
        with self._lock:
            self.bar.set_postfix_str(f"{done}/{total} files", refresh=False)

    def close(self) -> None:
        self.bar.close()


def download_files(
    specs: Sequence[FileSpec],
    *,
    workers: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    desc: str = "download",
) -> BatchResult:
    """Make every `spec.dest` the verified file of its spec. The first file that cannot be downloaded
    stops the batch (files not yet started are cancelled) and its error is raised."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    dests = [spec.dest for spec in specs]
    if len(set(dests)) != len(dests):
        raise ValueError(f"{desc}: several files would be written to the same path")
    with ThreadPoolExecutor(workers) as pool:
        checks = tqdm(pool.map(is_complete, specs), total=len(specs), desc=f"{desc}: verify", unit="file")
        present = list(checks)
    missing = [spec for spec, ok in zip(specs, present, strict=True) if not ok]
    log.info("%s: %d of %d files already present and verified", desc, len(specs) - len(missing), len(specs))
    if not missing:
        return BatchResult(downloaded=0, already_present=len(specs), bytes_downloaded=0)

    sizes = [spec.size for spec in missing]
    resumable = sum(part.stat().st_size for spec in missing if (part := partial_path(spec.dest)).is_file())
    total = sum(sizes) if None not in sizes else None
    progress = _ByteProgress(total, resumable, f"{desc} ({len(missing)} files)")
    pool = ThreadPoolExecutor(min(workers, len(missing)))
    try:
        futures = [
            pool.submit(
                download_file,
                spec.url,
                spec.dest,
                md5=spec.md5,
                sha256=spec.sha256,
                size=spec.size,
                validate=spec.validate,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                on_bytes=progress,
            )
            for spec in missing
        ]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            progress.file_done(done, len(futures))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    return BatchResult(
        downloaded=len(missing),
        already_present=len(specs) - len(missing),
        bytes_downloaded=progress.received,
    )
