"""The w_avg and evaluate stages' work: W average of the trained generator, and its metrics.

Both read the final generator the train stage wrote; evaluate measures it against the shards with the
official metric names and writes ``metrics/eval.json`` for ``dvc metrics``, then logs the same numbers
into the train stage's MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.params import Params
from pipeline.tracking import reopen_run
from pipeline.training import dataset_fingerprint
from stylegan.archs import has_w_space
from stylegan.dataset import ShardDataset
from stylegan.devices import resolve_device
from stylegan.metrics import compute_metrics, w_average
from stylegan.serialization import load_network

log = logging.getLogger(__name__)

FEATURE_CACHE = ".cache/features"


@dataclass(frozen=True)
class EvalPaths:
    """The files these stages read and write (the deps and outs of `dvc.yaml`)."""

    generator: Path = Path("models/G_ema.safetensors")
    shards: Path = Path("data/shards")
    w_avg: Path = Path("models/w_avg.safetensors")
    w_avg_stats: Path = Path("models/w_avg.json")
    metrics: Path = Path("metrics/eval.json")


def label_sampler(dataset: ShardDataset):
    """Draw one-hot labels with the data set's class frequencies (None for an unlabelled data set)."""
    if not dataset.use_labels:
        return None
    probs = dataset.label_distribution()
    eye = np.eye(len(probs), dtype=np.float32)
    return lambda n, rng: eye[rng.choice(len(probs), size=n, p=probs)]


def _dataset(params: Params, paths: EvalPaths) -> ShardDataset:
    return ShardDataset(paths.shards, shuffle=False, use_labels=params.model.conditional)


def compute_w_avg(params: Params, paths: EvalPaths = EvalPaths()) -> dict[str, Any]:
    """Write the W average (safetensors: ``w_avg``, ``w_std``) and its statistics (JSON)."""
    p = params.w_avg
    G = load_network(paths.generator)
    if not has_w_space(G):  # recorded, so evaluate and the report can say why there is no average
        reason = f"{type(G).__name__} has no W space (no mapping network), so it has no W average"
        save_file({}, paths.w_avg, metadata={"available": "false", "reason": reason})
        paths.w_avg_stats.write_text(json.dumps({"available": False, "reason": reason}, indent=2) + "\n")
        log.info("w_avg: %s", reason)
        return {"available": False, "reason": reason}
    stats = w_average(
        G,
        num_samples=p.num_samples,
        batch_size=p.batch,
        seed=p.seed,
        device=resolve_device(p.device),
        label_sampler=label_sampler(_dataset(params, paths)),
    )
    tensors = {key: torch.as_tensor(stats.pop(key), dtype=torch.float32) for key in ("w_avg", "w_std")}
    save_file(tensors, paths.w_avg)
    stats["w_std_mean"] = float(tensors["w_std"].mean())
    paths.w_avg_stats.write_text(json.dumps(_plain(stats), indent=2) + "\n")
    return stats


def evaluate(params: Params, paths: EvalPaths = EvalPaths()) -> dict[str, dict[str, Any]]:
    """Compute `eval.metrics` and write them as ``{name: record}`` to ``metrics/eval.json``."""
    p = params.eval
    dataset = _dataset(params, paths)
    G = load_network(paths.generator)
    w_avg = load_file(paths.w_avg).get("w_avg")  # absent for a generator without W space
    cache_root = Path(os.environ.get("DVC_ROOT", ".")) / FEATURE_CACHE
    results = compute_metrics(
        p.metrics,
        G,
        real_images=(images for images, _ in dataset.iterate_batches(p.batch)),
        num_gen=p.num_gen,
        max_real=p.num_real,
        batch_size=p.batch,
        seed=p.seed,
        device=resolve_device(p.device),
        ppl_crop=p.ppl_crop,
        truncation_psi=p.truncation_psi,
        w_avg=w_avg,
        xflip=params.train.mirror,
        label_sampler=label_sampler(dataset),
        feature_cache_dir=str(cache_root),
        dataset_key=dataset_fingerprint(paths.shards),
    )
    records = {result["name"]: _plain(result) for result in results}
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(records, indent=2) + "\n")
    for name, record in records.items():
        shown = record["value"] if record["available"] else f"unavailable: {record['reason']}"
        log.info("%s: %s", name, shown)
    with reopen_run() as run:
        run.log_metrics(
            {key: value for r in records.values() if r["available"] for key, value in r["results"].items()}
        )
    return records


def _plain(value: Any) -> Any:
    """JSON-ready: arrays to lists, numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | torch.Tensor):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
