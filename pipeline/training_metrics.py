"""Metrics during training: `train.metrics` of G_ema at snapshots, the best snapshot kept, the export choice.

As NVIDIA's training loop measures its metrics at network snapshots, :class:`TrainingMetrics` measures
at the first checkpoint after every ``metric_kimg`` thousand images (every checkpoint when None) and at
the end of training. Tying measurements to checkpoints keeps them consistent across resume: a resumed run
starts after its latest checkpoint, so nothing it measured is measured again with other weights.

The measurements and the best snapshot are recorded in the run folder (``training_metrics.json``,
``best/G_ema.safetensors``) beside the checkpoints, so they survive an interruption. The best snapshot is
the one with the lowest value of the first FID of ``names`` (the metric ``train.export: best_fid`` selects
by). Real-image features are computed once per dataset and detector and cached (:mod:`stylegan.metrics`'
feature cache, shared with the evaluate stage). Should a resumed run ever measure again at or before an
earlier measurement, the later records (and a best snapshot among them) are dropped.

Generated images come from fixed seeds, so successive values differ by the network only.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from stylegan.dataset import ShardDataset
from stylegan.files import atomic_write_bytes, atomic_write_json
from stylegan.metrics import class_frequency_sampler, compute_metrics
from stylegan.metrics.detectors import DetectorStore
from stylegan.serialization import save_network

log = logging.getLogger(__name__)

FEATURE_CACHE = ".cache/features"  # under the DVC root; the evaluate stage caches there too
STATE_FILE = "training_metrics.json"
BEST_GENERATOR = "best/G_ema.safetensors"
METRIC_BATCH = 32
METRIC_SEED = 0
_EPS = 1e-9


@dataclass(frozen=True)
class BestSnapshot:
    metric: str
    value: float
    kimg: float
    path: Path


def selection_metric(names: Sequence[str]) -> str | None:
    """The metric the best snapshot is chosen by: the first FID of ``names``."""
    return next((name for name in names if name.startswith("fid")), None)


class TrainingMetrics:
    """Measures ``names`` on G_ema when due, records every measurement and keeps the best snapshot.

    run_dir: the training run's folder (checkpoints live there); shards_dir: the training data, whose
    features are cached under ``feature_cache_dir`` by ``dataset_key`` (the shard index's hash).
    total_kimg: the end of training, where a last measurement is always due.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        run_dir: Path,
        shards_dir: Path,
        total_kimg: float,
        every_kimg: float | None = None,
        xflip: bool = False,
        conditional: bool = False,
        device: torch.device | str = "cpu",
        feature_cache_dir: Path | None = None,
        dataset_key: str | None = None,
        detectors: DetectorStore | None = None,
    ) -> None:
        self.names = list(names)
        self.run_dir, self.shards_dir = Path(run_dir), Path(shards_dir)
        self.total_kimg, self.every_kimg = total_kimg, every_kimg
        self.xflip, self.conditional, self.device = xflip, conditional, torch.device(device)
        self.feature_cache_dir, self.dataset_key = feature_cache_dir, dataset_key
        self.detectors = detectors or DetectorStore()
        self.selection = selection_metric(self.names)
        self._reported_unavailable: set[str] = set()
        state = self._load_state()
        self.measured: list[dict[str, Any]] = state.get("measured", [])
        self._best: dict[str, Any] | None = state.get("best")

    # -- state ----------------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {}
        return json.loads(self.state_path.read_text())

    def _save_state(self) -> None:
        atomic_write_json(self.state_path, {"measured": self.measured, "best": self._best})

    @property
    def last_kimg(self) -> float | None:
        return self.measured[-1]["kimg"] if self.measured else None

    @property
    def best(self) -> BestSnapshot | None:
        """The snapshot with the lowest value of :attr:`selection`, when one was measured."""
        if self._best is None or not (self.run_dir / BEST_GENERATOR).is_file():
            return None
        best = self._best
        return BestSnapshot(best["metric"], best["value"], best["kimg"], self.run_dir / BEST_GENERATOR)

    # -- when ---------------------------------------------------------------------------------------------

    def due(self, kimg: float, at_checkpoint: bool) -> bool:
        """Whether to measure at a tick ending at ``kimg``: at checkpoints only, at the end of training,
        and at the first checkpoint after each multiple of ``every_kimg`` since the last measurement."""
        if not self.names or not at_checkpoint:
            return False
        last = self.last_kimg
        if last is not None and kimg <= last + _EPS:
            return False
        if kimg >= self.total_kimg - _EPS or self.every_kimg is None:
            return True
        passed = math.floor(kimg / self.every_kimg + _EPS)
        return passed > (math.floor(last / self.every_kimg + _EPS) if last is not None else 0)

    # -- measuring ----------------------------------------------------------------------------------------

    def on_tick(self, kimg: float, checkpoint: Path | None, G_ema: nn.Module | None) -> dict[str, float]:
        """Measure when due (see :meth:`due`); the values measured, or an empty dict."""
        if G_ema is None or not self.due(kimg, checkpoint is not None):
            return {}
        return self.measure(G_ema, kimg)

    def measure(self, G_ema: nn.Module, kimg: float) -> dict[str, float]:
        """Compute every metric of G_ema now, record it as measured at ``kimg`` and keep it if it is the
        best so far. Returns ``{result key: value}`` of the available metrics."""
        dataset = ShardDataset(self.shards_dir, shuffle=False, use_labels=self.conditional)
        results = compute_metrics(
            self.names,
            G_ema,
            real_images=_images(dataset),
            batch_size=METRIC_BATCH,
            seed=METRIC_SEED,
            device=self.device,
            xflip=self.xflip,
            label_sampler=_label_sampler(dataset),
            detectors=self.detectors,
            feature_cache_dir=str(self.feature_cache_dir) if self.feature_cache_dir else None,
            dataset_key=self.dataset_key,
            progress=False,
        )
        values: dict[str, float] = {}
        for result in results:
            if result["available"]:
                values.update({key: float(value) for key, value in result["results"].items()})
            elif result["name"] not in self._reported_unavailable:
                self._reported_unavailable.add(result["name"])
                log.warning("training metric %s is unavailable: %s", result["name"], result["reason"])
        # A measurement at or before an earlier one belongs to a run that resumed from before it.
        self.measured = [m for m in self.measured if m["kimg"] < kimg - _EPS]
        self.measured.append({"kimg": kimg, "values": values})
        if self._best is not None and self._best["kimg"] >= kimg - _EPS:
            self._best = None
        value = values.get(self.selection) if self.selection else None
        if value is not None and math.isfinite(value) and (self._best is None or value < self._best["value"]):
            save_network(self.run_dir / BEST_GENERATOR, G_ema)
            self._best = {"metric": self.selection, "value": value, "kimg": kimg}
        self._save_state()
        shown = ", ".join(f"{key} {value:.4g}" for key, value in values.items()) or "nothing available"
        best = self.best
        if best is not None:
            shown += f" (best {best.metric} {best.value:.4g} at kimg {best.kimg:g})"
        log.info("kimg %g: %s", kimg, shown)
        return values

    def finish(self, G_ema: nn.Module, kimg: float) -> dict[str, float]:
        """At the end of training: measure the final G_ema unless that was done at its last tick (a run
        that was already complete, or whose metrics were added afterwards, gets its one measurement)."""
        if not self.names or (self.last_kimg is not None and self.last_kimg >= kimg - _EPS):
            return {}
        return self.measure(G_ema, kimg)

    def summary(self) -> dict[str, float]:
        """Flat numbers for the stage's metrics file: the last measured values and the best snapshot."""
        out: dict[str, float] = dict(self.measured[-1]["values"]) if self.measured else {}
        best = self.best
        if best is not None:
            out[f"best_{best.metric}"] = best.value
            out[f"best_{best.metric}_kimg"] = best.kimg
        return out


def copy_measurements(source_dir: Path, target_dir: Path, *, up_to_kimg: float) -> None:
    """Give a run folder that starts from another one's checkpoint at `up_to_kimg` that run's measurements
    up to there, and its best snapshot when that is among them."""
    best_generator = source_dir / BEST_GENERATOR
    generator = best_generator.read_bytes() if best_generator.is_file() else None  # before the state
    try:  # that names it: a source run writes a new best snapshot first, then its state
        state = json.loads((source_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return
    measured = [m for m in state.get("measured", []) if m["kimg"] <= up_to_kimg + _EPS]
    best = state.get("best")
    if best is None or best["kimg"] > up_to_kimg + _EPS or generator is None:
        best = None
    else:
        atomic_write_bytes(target_dir / BEST_GENERATOR, generator)
    atomic_write_json(target_dir / STATE_FILE, {"measured": measured, "best": best})


def _images(dataset: ShardDataset) -> Iterator[torch.Tensor]:
    """Real images, read only if their features are not cached yet (the generator is lazy)."""
    for images, _ in dataset.iterate_batches(METRIC_BATCH):
        yield images


def _label_sampler(dataset: ShardDataset):
    """One-hot labels with the data set's class frequencies (None for an unconditional run)."""
    if not dataset.use_labels:
        return None
    return class_frequency_sampler(dataset.label_distribution())


def exported_generator(
    G_ema: nn.Module, measured: TrainingMetrics, choice: str
) -> tuple[nn.Module, dict[str, Any]]:
    """The G_ema to export for ``train.export`` (``last`` or ``best_fid``) and a record of the choice.

    ``best_fid`` without a measured FID (none was available) falls back to the last G_ema, and says so."""
    if choice == "last":
        return G_ema, {"choice": "last"}
    best = measured.best
    if best is None:
        why = f"no FID was measured (train.metrics={measured.names})"
        log.warning("train.export=%s: %s; exporting the last G_ema", choice, why)
        return G_ema, {"choice": "last", "requested": choice, "why": why}
    G = copy.deepcopy(G_ema).cpu()
    G.load_state_dict(load_file(best.path))
    log.info("exporting the G_ema of kimg %g: %s %.4g", best.kimg, best.metric, best.value)
    return G, {"choice": choice, "metric": best.metric, "value": best.value, "kimg": best.kimg}
