"""Command-line entry point for training on shards, on one or several GPUs::

    torchrun --nproc_per_node=8 -m stylegan.training.launch job.json
    python -m stylegan.training.launch job.json          # one process

``job.json`` holds::

    {"run_dir": "...", "data": "<shard folder or index.json>", "cfg": "auto", "overrides": {...},
     "mirror": false, "use_labels": false, "device": "auto", "workers": 2,
     "network_out": "<optional .safetensors path for the final G_ema>"}

Rank 0 logs, writes the checkpoints (``run_dir/checkpoints``), appends one JSON object per tick to
``run_dir/metrics.jsonl`` and saves sample grids as ``run_dir/samples/samples-<nimg>.png``. A resumed
run appends again the ticks after its checkpoint; keep the last line per ``kimg``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stylegan.dataset import ShardDataset
from stylegan.serialization import save_network
from stylegan.training.configs import resolve_config
from stylegan.training.distributed import init_distributed, shutdown_distributed
from stylegan.training.loop import TickReport, train

METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class Job:
    run_dir: Path
    data: Path
    cfg: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    mirror: bool = False
    use_labels: bool = False
    device: str = "auto"
    workers: int = 2
    network_out: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Job:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"cannot read job file {path}: {e}") from None
        if not isinstance(raw, dict):
            raise SystemExit(f"{path}: the job must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(raw) - names), sorted({"run_dir", "data"} - set(raw))
        if unknown or missing:
            raise SystemExit(f"{path}: unknown keys {unknown}, missing keys {missing}")
        for key, kind in (("overrides", dict), ("mirror", bool), ("use_labels", bool), ("workers", int)):
            if key in raw and not isinstance(raw[key], kind):
                raise SystemExit(f"{path}: {key} must be a {kind.__name__}, got {raw[key]!r}")
        paths = {k: Path(raw[k]) for k in ("run_dir", "data", "network_out") if raw.get(k) is not None}
        return cls(**{**raw, **paths})


class TickRecorder:
    """Progress callback that appends tick metrics to a JSON-lines file and saves sample grids."""

    def __init__(self, run_dir: Path) -> None:
        self.metrics_path = run_dir / METRICS_FILE
        self.samples_dir = run_dir / SAMPLES_DIR
        self.samples_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, report: TickReport) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(report.metrics) + "\n")
        if report.samples is not None:
            report.samples.save(self.samples_dir / f"samples-{round(report.kimg * 1000):012d}.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stylegan.training.launch", description=__doc__.split("::")[0]
    )
    parser.add_argument("job", type=Path, help="JSON job file")
    job = Job.load(parser.parse_args(argv).job)
    ctx = init_distributed(job.device)
    logging.basicConfig(
        level=logging.INFO if ctx.is_main else logging.WARNING,
        format=f"%(asctime)s rank {ctx.rank}: %(message)s",
        stream=sys.stderr,
    )
    try:
        dataset = ShardDataset(
            job.data,
            shuffle=True,
            seed=int(job.overrides.get("seed") or 0),
            xflip=job.mirror,
            use_labels=job.use_labels,
            rank=ctx.rank,
            world_size=ctx.world_size,
            infinite=True,
        )
        config = resolve_config(job.cfg, dataset.resolution, ctx.world_size, job.overrides)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        recorder = TickRecorder(job.run_dir) if ctx.is_main else None
        summary = train(
            config, dataset, job.run_dir, distributed=ctx, progress_callback=recorder, num_workers=job.workers
        )
        if ctx.is_main and job.network_out is not None:
            save_network(job.network_out, summary.G_ema)
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
