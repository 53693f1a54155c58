"""The w_avg and evaluate stages' work: W average of the trained generator, and its metrics.

Both read the final generator the train stage wrote; evaluate measures it against the shards with the
official metric names and writes two files: ``metrics/eval.json``, flat and small (one number per result
key: what ``dvc metrics``, ``dvc exp show`` and ``dvc metrics diff`` show), and
``metrics/eval_provenance.json``, what produced each number (detector and its hash, sample counts, seed,
timings, why a metric is unavailable), without machine-specific paths. It then logs the generator as an
MLflow model into the train stage's MLflow run, with these numbers as its metrics.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from pipeline.params import Params
from pipeline.tracking import reopen_run
from pipeline.training import dataset_fingerprint
from stylegan.archs import has_w_space
from stylegan.dataset import ShardDataset
from stylegan.devices import resolve_device
from stylegan.files import atomic_write_json
from stylegan.metrics import class_frequency_sampler, compute_metrics, w_average
from stylegan.serialization import load_network, save_safetensors

log = logging.getLogger(__name__)

FEATURE_CACHE = ".cache/features"


@dataclass(frozen=True)
class EvalPaths:
    """The files these stages read and write (the deps and outs of `dvc.yaml`)."""

    generator: Path = Path("models/G_ema.safetensors")
    generator_config: Path = Path("models/G_ema.json")
    shards: Path = Path("data/shards")
    w_avg: Path = Path("models/w_avg.safetensors")
    w_avg_stats: Path = Path("models/w_avg.json")
    metrics: Path = Path("metrics/eval.json")
    provenance: Path = Path("metrics/eval_provenance.json")


def label_sampler(dataset: ShardDataset):
    """Draw one-hot labels with the data set's class frequencies (None for an unlabelled data set)."""
    if not dataset.use_labels:
        return None
    return class_frequency_sampler(dataset.label_distribution())


def _dataset(params: Params, paths: EvalPaths) -> ShardDataset:
    return ShardDataset(paths.shards, shuffle=False, use_labels=params.model.conditional)


def compute_w_avg(params: Params, paths: EvalPaths = EvalPaths()) -> dict[str, Any]:
    """Write the W average (safetensors: ``w_avg``, ``w_std``) and its statistics (JSON)."""
    p = params.w_avg
    G = load_network(paths.generator)
    if not has_w_space(G):  # recorded, so evaluate and the report can say why there is no average
        reason = f"{type(G).__name__} has no W space (no mapping network), so it has no W average"
        save_safetensors({}, paths.w_avg, metadata={"available": "false", "reason": reason})
        atomic_write_json(paths.w_avg_stats, {"available": False, "reason": reason})
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
    save_safetensors(tensors, paths.w_avg)
    stats["w_std_mean"] = float(tensors["w_std"].mean())
    atomic_write_json(paths.w_avg_stats, _plain(stats))
    return stats


def evaluate(params: Params, paths: EvalPaths = EvalPaths()) -> dict[str, dict[str, Any]]:
    """Compute `eval.metrics`: their numbers to ``metrics/eval.json`` (see :func:`metric_values`), their
    records ``{name: record}`` to ``metrics/eval_provenance.json`` (see :func:`portable`). Returns the
    records."""
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
    records = {result["name"]: portable(_plain(result)) for result in results}
    atomic_write_json(paths.metrics, metric_values(records))  # atomic: a kill leaves no half file
    atomic_write_json(paths.provenance, records)
    for name, record in records.items():
        shown = record["value"] if record["available"] else f"unavailable: {record['reason']}"
        log.info("%s: %s", name, shown)
    with reopen_run() as run:
        # The generator as an MLflow model, its metrics those measured here, on the training data.
        config = paths.generator_config if paths.generator_config.is_file() else None
        model_id = run.log_generator(paths.generator, paths.w_avg if w_avg is not None else None, config)
        run.log_metrics(metric_values(records), model_id=model_id, dataset=run.training_dataset())
    return records


def metric_values(records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{result key: number}`` of every available metric, e.g. ``{"fid50k_full": 12.3,
    "pr50k3_full_precision": 0.7, ...}``: one column per number in `dvc exp show`. Unavailable metrics and
    non-finite numbers are left out (their records say why)."""
    return {
        key: float(value)
        for record in records.values()
        if record.get("available")
        for key, value in (record.get("results") or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def portable(record: dict[str, Any]) -> dict[str, Any]:
    """A metric's record without this machine's paths: the detector keeps its name and sha256 (which
    identify it) but not where it was found; in messages, paths in the project become relative and the
    home folder reads ``~``."""
    record = dict(record)
    if isinstance(record.get("detector"), dict):
        record["detector"] = {key: value for key, value in record["detector"].items() if key != "path"}
    roots = {str(Path(os.environ.get("DVC_ROOT", ".")).resolve()): "", str(Path.cwd().resolve()): ""}
    roots[str(Path.home())] = "~" + os.sep
    prefixes = [(root + os.sep, short) for root, short in roots.items() if root != os.sep]
    return _replace_prefixes(record, sorted(prefixes, key=lambda item: -len(item[0])))


def _replace_prefixes(value: Any, prefixes: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        return {key: _replace_prefixes(item, prefixes) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_prefixes(item, prefixes) for item in value]
    if isinstance(value, str):
        for prefix, short in prefixes:
            value = value.replace(prefix, short)
    return value


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
