"""`train.resume_from`: start a run from pretrained weights (fine-tuning, transfer learning).

The source is one of our training checkpoints (``.pt``), a network file of ours (``.safetensors``: a
generator only, D starts fresh), an NVIDIA snapshot pickle (``.pkl``, read without running its code) or
an official ``.npz``; a path or an ``http(s)://`` URL, downloaded once into the cache and checked against
the sha256 recorded on first download. The weights are copied into networks built from the run's own
config, so execution settings (Freeze-D, fp16 layers) are the run's; a source whose architecture
differs fails with every mismatching key and shape.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.download.http import DownloadError, download_file
from pipeline.files import default_cache_dir, file_digest
from pipeline.stage import StageError
from stylegan.files import atomic_write_text
from stylegan.interop import load_official_npz, load_official_pkl
from stylegan.serialization import load_network
from stylegan.training.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".safetensors", ".pkl", ".npz")


@dataclass
class Pretrained:
    """State dicts of a source (``D`` may be None: then D starts from its fresh initialisation)."""

    source: str
    sha256: str
    G: Mapping[str, torch.Tensor]
    G_ema: Mapping[str, torch.Tensor]
    D: Mapping[str, torch.Tensor] | None
    augment_p: float | None


def fetch(source: str, cache_dir: Path | None = None) -> Path:
    """A local path for ``source``; URLs are downloaded once and verified against the first download."""
    if not source.startswith(("http://", "https://")):
        path = Path(source).expanduser()
        if not path.is_file():
            raise StageError(f"train.resume_from: {path} does not exist")
        return path
    cache = cache_dir or default_cache_dir("pretrained")
    name = hashlib.sha256(source.encode()).hexdigest()[:16] + "-" + source.rsplit("/", 1)[-1].split("?")[0]
    path, record = cache / name, cache / (name + ".json")
    expected = json.loads(record.read_text())["sha256"] if record.is_file() else None
    if path.is_file() and expected is not None and file_digest(path) == expected:
        return path
    try:
        download_file(source, path, sha256=expected, retries=3)
    except DownloadError as e:
        raise StageError(f"train.resume_from: cannot download {source} (offline?): {e}") from None
    atomic_write_text(record, json.dumps({"url": source, "sha256": file_digest(path)}) + "\n")
    return path


def load_pretrained(source: str, cache_dir: Path | None = None) -> Pretrained:
    path = fetch(source, cache_dir)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise StageError(f"train.resume_from: {path} is not one of {SUFFIXES}")
    augment_p = None
    if suffix == ".pt":
        try:
            state = load_checkpoint(path)  # tensors and primitives only: pickled code is refused, not run
        except CheckpointError as e:
            raise StageError(f"train.resume_from: {e}") from None
        G, D, G_ema = state["G"], state["D"], state["G_ema"]
        if state.get("augment"):
            augment_p = float(state["augment"]["p"])
    elif suffix == ".pkl":
        loaded = load_official_pkl(path)
        G, D, G_ema = (_state(loaded[k]) for k in ("G", "D", "G_ema"))
        augment_p = loaded["augment_p"]
    elif suffix == ".npz":
        net_G, net_D = load_official_npz(path)
        G, D, G_ema = _state(net_G), _state(net_D), _state(net_G)
    else:
        G = G_ema = _state(load_network(path))
        D = None
    return Pretrained(str(source), file_digest(path), G, G_ema, D, augment_p)


def _state(module: nn.Module | None) -> dict[str, torch.Tensor] | None:
    return None if module is None else {k: v.detach().cpu() for k, v in module.state_dict().items()}


def initialise(pretrained: Pretrained, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Copy the pretrained weights into the run's fresh ``G`` and ``D``; return ``(G, D, G_ema)``."""
    G_ema = copy.deepcopy(G)
    problems = []
    for name, net, state in (
        ("G", G, pretrained.G),
        ("G_ema", G_ema, pretrained.G_ema),
        ("D", D, pretrained.D),
    ):
        if state is None:
            log.info("resume_from: %s has no %s; it starts from its initialisation", pretrained.source, name)
            continue
        problems += [f"{name}.{p}" for p in _mismatches(net.state_dict(), state)]
        if not problems:
            net.load_state_dict({k: v.to(dtype=net.state_dict()[k].dtype) for k, v in state.items()})
    if problems:
        raise StageError(
            f"train.resume_from: {pretrained.source} does not fit the configured networks "
            f"({len(problems)} mismatches: {'; '.join(problems)}). "
            "Set model and train params (resolution, widths, mapping layers, ...) to the source's."
        )
    return G, D, G_ema


def _mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k}: expected {list(expected[k].shape)}, got {list(given[k].shape)}"
        for k in sorted(set(expected) & set(given))
        if expected[k].shape != given[k].shape
    ]
    return [f"{k}: missing" for k in missing] + [f"{k}: unexpected" for k in unexpected] + shapes
