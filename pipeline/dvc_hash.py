"""DVC's hash of a file or folder, as `dvc.lock` records it, computed by DVC's own code.

A folder's hash is the md5 of its listing (each file's relative path and md5) with a `.dir` suffix, e.g.
`797294f9ad419b8296ff72a813234079.dir`; a file's is its md5. Inside a DVC repo the repo's `.dvcignore` and
its state database (file hashes cached by inode and mtime) are used, so a folder DVC has just hashed (a
stage output) costs a stat per file, not a read.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DvcHash:
    md5: str  # with the `.dir` suffix for a folder
    size: int  # bytes, all files together
    nfiles: int | None  # None for a file


def dvc_hash(path: str | Path) -> DvcHash:
    """The hash `dvc.lock` would record for `path` (a file or a folder)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build

    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"cannot hash {path}: no such file or folder")
    try:
        root = Repo.find_root(str(path if path.is_dir() else path.parent))
    except NotDvcRepoError:
        root = None
    if root is not None:
        with Repo(root) as repo:
            _, meta, obj = build(
                repo.cache.local,
                str(path),
                repo.cache.local.fs,
                "md5",
                dry_run=True,
                ignore=repo.dvcignore,
                state=repo.state,
            )
    else:
        from dvc_data.hashfile.db import HashFileDB
        from dvc_objects.fs.local import LocalFileSystem

        fs = LocalFileSystem()
        with tempfile.TemporaryDirectory() as tmp:
            _, meta, obj = build(HashFileDB(fs, tmp), str(path), fs, "md5", dry_run=True)
    return DvcHash(md5=obj.hash_info.value, size=int(meta.size or 0), nfiles=meta.nfiles)


def lock_hash(lock_file: str | Path, path: str | Path) -> str | None:
    """The hash `lock_file` (a `dvc.lock`) records for the output `path`, or None when it lists none."""
    import yaml

    try:
        lock = yaml.safe_load(Path(lock_file).read_text()) or {}
    except FileNotFoundError:
        return None
    wanted = os.path.normpath(str(path))
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if os.path.normpath(out.get("path", "")) == wanted:
                return out.get("md5")
    return None
