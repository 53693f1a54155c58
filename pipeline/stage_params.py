"""The params each stage's results depend on, written for DVC without the settings that only say where and
how fast a stage runs.

DVC tracks params by section or key by key, and refuses to run a stage whose params file lacks a key it
tracks. The schema gives every key a default, so params files leave most keys out, and a `dvc.yaml` that
listed `train` key by key (to leave `train.workers` out) would stop at the first file without one of them.
So the `check` stage, which reruns whenever `params.yaml` changes, writes for each stage below the params it
reads, as the file sets them, less :data:`RUNTIME_ONLY`, to `.cache/params/<stage>.json`; the stage
depends on that file rather than on the sections. Changing `train.workers` rewrites the same bytes and DVC
finds the train stage up to date, while any other change to `train` reruns it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.params import Params
from stylegan.files import atomic_write_text

PARAMS_DIR = Path(".cache/params")

#: Keys that change where or how fast a stage runs, never what it writes.
RUNTIME_ONLY = frozenset(
    {"train.device", "train.workers", "train.checkpoint_root", "w_avg.device", "eval.device"}
)

#: Per stage, the sections and keys of params.yaml its results depend on (`model` is tracked by DVC
#: itself, in `dvc.yaml`: it holds nothing runtime-only).
STAGE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "train": ("train",),
    "w_avg": ("w_avg", "model.conditional"),
    "evaluate": ("eval", "train.mirror", "model.conditional"),
}


def stage_params(params: Params, stage: str) -> dict[str, Any]:
    """The values of :data:`STAGE_PARAMS` ``[stage]`` that the file sets (keys left to their default stay
    out, as a preset fills some of them), nested by section, without :data:`RUNTIME_ONLY`."""
    written = params.model_dump(mode="json", exclude_unset=True)
    selected: dict[str, Any] = {}
    for key in STAGE_PARAMS[stage]:
        section, _, name = key.partition(".")
        values = written.get(section, {})
        if name:
            values = {name: values[name]} if name in values else {}
        kept = {k: v for k, v in values.items() if f"{section}.{k}" not in RUNTIME_ONLY}
        selected.setdefault(section, {}).update(kept)
    return selected


def write_stage_params(params: Params, directory: Path = PARAMS_DIR) -> list[Path]:
    """Write `<directory>/<stage>.json` for every stage of :data:`STAGE_PARAMS`; the paths written."""
    paths = []
    for stage in STAGE_PARAMS:
        path = directory / f"{stage}.json"
        atomic_write_text(path, json.dumps(stage_params(params, stage), indent=1, sort_keys=True) + "\n")
        paths.append(path)
    return paths
