"""Checkpoint folders: one per training config and data, and within it one per owner.

``<checkpoint_root>/<run key>/<owner>/`` holds one run's checkpoints, curves, training-time metrics and
MLflow run id. The owner is the DVC experiment that trains (``exp-<name>``) or the workspace
(``workspace-<hash of its path>``), so two sweeps, or two clones sharing a checkpoint root, never write
into one folder nor resume from each other's half-written state, and a rerun after a crash finds its own
folder again.

A run whose folder is still empty starts from a copy of the most advanced checkpoint that another owner
of the same run key holds within this run's length (:func:`seed_from_siblings`): a longer run extends a
shorter one, an experiment retried under a new name resumes its crashed predecessor, and a sweep point
already trained elsewhere costs nothing, all without sharing a file that either side writes later.
Checkpoints are written once under their final name (atomic rename) and never changed, so they are
hard-linked where the filesystem allows and copied elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from pipeline.training_metrics import copy_measurements
from stylegan.files import atomic_write_bytes
from stylegan.training.checkpoint import CheckpointManager, checkpoint_nimg
from stylegan.training.loop import CHECKPOINT_DIR

CURVES = "curves.tsv"
MLFLOW_RUN_ID_FILE = "mlflow_run_id"

log = logging.getLogger(__name__)


def owner_name() -> str:
    """This run's folder name under its run key: the DVC experiment, or the workspace at DVC_ROOT."""
    if experiment := os.environ.get("DVC_EXP_NAME"):
        return "exp-" + re.sub(r"[^A-Za-z0-9._-]", "_", experiment)
    root = os.path.realpath(os.environ.get("DVC_ROOT", "."))
    return "workspace-" + hashlib.sha256(root.encode()).hexdigest()[:8]


def seed_from_siblings(run_dir: Path, max_nimg: int) -> Path | None:
    """Give an empty `run_dir` the most advanced checkpoint of its siblings with at most `max_nimg` images,
    with its curves and training-time metrics up to it; the source folder, or None. (One that turns out
    unreadable is skipped at resume, as any damaged checkpoint is.)"""
    own = CheckpointManager(run_dir / CHECKPOINT_DIR)
    if own.paths():
        return None
    found = [
        path for sibling in _siblings(run_dir) for path in CheckpointManager(sibling / CHECKPOINT_DIR).paths()
    ]
    candidates = sorted(((checkpoint_nimg(path), path) for path in found), reverse=True)
    for nimg, path in candidates:
        if nimg > max_nimg:
            continue
        try:
            _link_or_copy(path, own.directory / path.name)
        except FileNotFoundError:  # its run dropped it as older than the ones it keeps: take the next
            continue
        source = path.parent.parent
        _copy_if_present(source / CURVES, run_dir / CURVES)
        _copy_if_present(source / MLFLOW_RUN_ID_FILE, run_dir / MLFLOW_RUN_ID_FILE)  # tags "continues"
        copy_measurements(source, run_dir, up_to_kimg=nimg / 1000)
        log.info("starting from %s's checkpoint at %g kimg (copied into %s)", source, nimg / 1000, run_dir)
        return source
    return None


def _siblings(run_dir: Path) -> list[Path]:
    key_dir = run_dir.parent
    found = [p for p in key_dir.iterdir() if p.is_dir() and p != run_dir and p.name != CHECKPOINT_DIR]
    return [*found, key_dir]  # the key folder itself: a run of the layout without owners


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except FileNotFoundError:
        raise
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(source, partial)  # FileNotFoundError too when its run dropped it meanwhile
    partial.replace(target)


def _copy_if_present(source: Path, target: Path) -> None:
    try:
        atomic_write_bytes(target, source.read_bytes())
    except FileNotFoundError:
        pass
