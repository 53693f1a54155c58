"""Training checkpoints: plain tensors and primitives, written atomically, loaded without unpickling code.

A checkpoint is a dict of state dicts, counters, random generator states and the config, saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``. Files are named by the number of
images trained on, written to a temporary file that is flushed to disk and then renamed over the
final name, so a crash (even ``kill -9``) leaves either the old set of checkpoints or the new one.

Each checkpoint carries the sha256 of its contents. A resumed run takes the newest checkpoint that reads
back whole, matches its sha256 and holds finite weights; it warns about, and falls back past, every
newer one that does not (truncated, corrupted on disk, NaN/Inf weights, or carrying pickled code,
which ``weights_only`` refuses without running it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan.files import atomic_open

log = logging.getLogger(__name__)

FORMAT = "stylegan.training-checkpoint/1"
_NAME = re.compile(r"^checkpoint-(\d{12})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read."""


def checkpoint_name(cur_nimg: int) -> str:
    return f"checkpoint-{cur_nimg:012d}.pt"


def checkpoint_nimg(path: str | os.PathLike[str]) -> int:
    """The images seen at a checkpoint, from its file name (see :func:`checkpoint_name`)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: not a checkpoint file name")
    return int(match.group(1))


def first_non_finite(state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> str | None:
    """``"<net>.<tensor>"`` of the first floating tensor holding NaN or Inf, or None."""
    for net, state in state_dicts.items():
        for name, tensor in state.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"{net}.{name}"
    return None


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` that leaves either the old file or the complete new one (see :mod:`stylegan.files`);
    a full disk raises :class:`~stylegan.files.DiskFullError` naming ``path``."""
    with atomic_open(path, "wb") as f:
        recorder = _WriteErrors(f)
        try:
            torch.save(obj, recorder)
        except RuntimeError:  # torch's zip writer reports a failed write as "unexpected pos"
            if recorder.error is not None:
                raise recorder.error from None
            raise


class _WriteErrors:
    """A binary file that remembers the OSError of a failed write, which torch's writer does not pass on."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; only tensors and primitives are accepted, and the contents must
    match the sha256 recorded in the file (checkpoints written before it was recorded have none)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: cannot read checkpoint: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a training checkpoint (expected format {FORMAT!r})")
    recorded = state.pop("sha256", None)
    if recorded is not None and recorded != content_digest(state):
        raise CheckpointError(f"{path}: contents do not match the sha256 recorded when it was written")
    return state


def content_digest(state: Any) -> str:
    """sha256 of a checkpoint's contents: every tensor's dtype, shape and bytes, every primitive, every key,
    in order."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{tensor.dtype}{list(value.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy())
        elif isinstance(value, Mapping):
            digest.update(f"D{len(value)}".encode())
            for key, item in value.items():
                digest.update(f"K{key!r}".encode())
                visit(item)
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                visit(item)
        else:
            digest.update(f"P{value!r}".encode())

    visit(state)
    return digest.hexdigest()


class CheckpointManager:
    """The checkpoints of one run in ``directory``: save, keep the newest ``keep``, find the latest."""

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name)

    def save(self, state: Mapping[str, Any], cur_nimg: int) -> Path:
        """Write ``state`` as the checkpoint at ``cur_nimg`` images and drop the oldest beyond ``keep``.

        Refuses (:class:`CheckpointError`) when a network holds a non-finite value, so the last
        good checkpoint is never replaced by a diverged one.
        """
        bad = first_non_finite({k: state[k] for k in ("G", "D", "G_ema") if k in state})
        if bad is not None:
            raise CheckpointError(f"refusing to write a checkpoint with non-finite weights in {bad}")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / checkpoint_name(cur_nimg)
        contents = {**state, "format": FORMAT}
        atomic_save({**contents, "sha256": content_digest(contents)}, path)
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest good checkpoint: readable, matching its sha256, with finite weights. Newer ones that
        are not are skipped, each with a warning naming the file and what is wrong with it."""
        self._remove_temporaries()
        found = self.paths()
        for path in reversed(found):
            try:
                state = load_checkpoint(path)
                bad = first_non_finite({k: state[k] for k in ("G", "D", "G_ema") if k in state})
                if bad is not None:
                    raise CheckpointError(f"{path}: non-finite weights in {bad}")
                return path, state
            except CheckpointError as e:
                log.warning("skipping checkpoint %s; falling back to an older one: %s", path.name, e)
        if found:
            log.warning(
                "none of the %d checkpoints in %s is usable: starting afresh", len(found), self.directory
            )
        return None

    def _remove_temporaries(self) -> None:
        """Delete half-written files left by a process killed while saving."""
        if self.directory.is_dir():
            for leftover in self.directory.glob(".checkpoint-*.tmp"):
                leftover.unlink(missing_ok=True)


# --- random generator states -------------------------------------------------------------------------


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch (CPU and ``device``), NumPy and Python generator states, as plain values."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"])
    )
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
