"""Atomic file writes: the one way this project writes a file that another step will read.

A writer gets a temporary file in the target's folder; only when it finishes without error is the
file flushed to disk and renamed over the target (and the rename itself made durable), so a crash,
``kill -9`` or a full disk leaves either the old file or the new one, never half of one. A full disk
(or quota) is reported as :class:`DiskFullError` naming the file, whichever library's writer hit it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space (or quota) was left to write a file; the file was left as it was."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` reports a full disk or quota: an OSError with that errno, or the OS's message in the
    error of a writer in another language (safetensors reports ``No space left on device (os error 28)``)."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    return any(os.strerror(code) in str(exc) for code in _FULL)


@contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (PIL, safetensors, torch).

    On success the file gets permissions ``mode`` (mkstemp makes it private), is fsynced and renamed
    over ``path``; on any error it is removed and ``path`` is left as it was. A full disk raises
    :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            code = exc.errno if isinstance(exc, OSError) and exc.errno in _FULL else errno.ENOSPC
            raise DiskFullError(code, os.strerror(code), str(path)) from exc
        raise
    _fsync_directory(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` on a temporary file that replaces ``path`` when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **dump_kwargs: Any) -> None:
    """``obj`` as indented JSON with a final newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, **dump_kwargs) + "\n")


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
