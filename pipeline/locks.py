"""One process at a time in a run folder.

Each DVC experiment, and each workspace, trains in a checkpoint folder of its own
(:mod:`pipeline.run_folders`), but the same one can still be started twice at once: `dvc exp run -n x`
in two shells, or two machines of a cluster running the same workspace's stage on a shared filesystem.
Both would write the same checkpoints and resume from each other's half-written state.
:func:`exclusive_folder` makes the second wait, saying for whom, and then go on from where the first
one ended.

The lock is `flock` on a file in the folder: the kernel releases it when its holder exits, even by
`kill -9`, so a crashed run never leaves a stale lock behind (on NFS, Linux maps it to a POSIX lock).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_FILE = ".lock"

log = logging.getLogger(__name__)


def describe_this_process() -> str:
    """Who holds a lock, for the one waiting: host, pid and the DVC experiment (or the workspace)."""
    experiment = os.environ.get("DVC_EXP_NAME")
    where = f"DVC experiment {experiment}" if experiment else "a workspace run"
    return f"{where} (pid {os.getpid()} on {socket.gethostname()})"


@contextmanager
def exclusive_folder(folder: str | os.PathLike[str], purpose: str = "training") -> Iterator[Path]:
    """Hold `folder` (created if missing) for the block; if another process holds it, log who and wait.
    On a filesystem without locks, the block runs unprotected, with a warning."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a+") as handle:
        if not _lock(handle, folder, purpose):
            yield folder
            return
        handle.seek(0)
        handle.truncate()
        handle.write(describe_this_process() + "\n")
        handle.flush()
        try:
            yield folder
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock(handle: IO[str], folder: Path, purpose: str) -> bool:
    """Take the lock, waiting for its holder if there is one; False where the filesystem has no locks."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
    except OSError as error:  # ENOLCK and the like
        log.warning("cannot lock %s (%s): two runs of it at once would both write there", folder, error)
        return False
    log.warning(
        "%s is in use by %s, %s in it; waiting for it to finish, then going on from its last checkpoint",
        folder,
        holder,
        purpose,
    )
    fcntl.flock(handle, fcntl.LOCK_EX)
    log.info("%s is free: going on", folder)
    return True
