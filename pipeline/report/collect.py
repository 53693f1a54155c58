"""Gather what the report shows from the other stages' outputs, git and MLflow, then render it."""

from __future__ import annotations

import json
import logging
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mlflow import MlflowClient

from pipeline.evaluation import EvalPaths
from pipeline.files import read_jsonl
from pipeline.params import PARAMS_FILE, Params, ParamsError, parse_params
from pipeline.report.hardware import describe_hardware
from pipeline.report.render import render_report
from pipeline.report.samples import COMPARISON_SIZE
from pipeline.report.tables import params_diff
from pipeline.stage import read_timings
from pipeline.tracking import RunInfo, reopen_run
from pipeline.training import TrainOutputs
from stylegan.dataset import ShardDataset
from stylegan.devices import resolve_device

log = logging.getLogger(__name__)

REPORT_DIR = Path("reports")
SKIPPED_FILES = (Path("data/aligned/skipped.jsonl"), Path("data/shards/skipped.jsonl"))
STATS_FILE = Path("data/shards/stats.json")
STAGES = ("download", "align", "prepare", "train", "w_avg", "evaluate", "report")


def committed_params(path: str = PARAMS_FILE) -> dict[str, Any] | None:
    """The params file as committed at HEAD (all keys, defaults filled in): what this run's params are
    compared with. None outside git or when the committed file does not validate."""
    try:
        text = subprocess.run(
            ["git", "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
        ).stdout
        return parse_params(yaml.safe_load(text)).model_dump(mode="json")
    except (OSError, subprocess.CalledProcessError, ParamsError):
        return None


def skipped_summary(files: tuple[Path, ...] = SKIPPED_FILES) -> dict[str, int]:
    """Skipped inputs of align and prepare, counted by reason."""
    reasons: Counter[str] = Counter()
    for path in files:
        if path.exists():
            reasons.update(f"{path.parent.name}: {row['reason']}" for row in read_jsonl(path))
    return dict(reasons)


def previous_runs(info: RunInfo, limit: int = 10) -> list[dict[str, Any]]:
    """The latest other MLflow runs of this run's experiment (same data set) with their metrics."""
    client = MlflowClient(tracking_uri=info.tracking_uri)
    runs = client.search_runs(
        [info.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit + 1
    )
    return [
        {"name": run.info.run_name or run.info.run_id[:8], "metrics": dict(run.data.metrics)}
        for run in runs
        if run.info.run_id != info.run_id and run.data.metrics
    ][:limit]


def training_images(
    shards: Path, count: int = COMPARISON_SIZE, labels: bool = False
) -> tuple[np.ndarray | None, list[int] | None]:
    """The first ``count`` images of the shards, uint8 ``[N, H, W, C]``, and their classes when ``labels``."""
    if not (shards / "index.json").is_file():
        return None, None
    dataset = ShardDataset(shards, shuffle=False, use_labels=labels)
    images, c = next(iter(dataset.iterate_batches(count)))
    return images.permute(0, 2, 3, 1).numpy(), (c.argmax(1).tolist() if labels else None)


def network_parameters(config: Path) -> dict[str, int] | None:
    """The parameter counts of G and D the train stage recorded beside the generator."""
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("parameters")


def build_report(params: Params, out_dir: Path = REPORT_DIR) -> Path:
    """Render the report of the current outputs and attach it to the pipeline's MLflow run."""
    train, evaluation = TrainOutputs(), EvalPaths()
    info = RunInfo.load()
    default = committed_params()
    timings = read_timings()
    real, labels = training_images(evaluation.shards, labels=params.model.conditional)
    index = render_report(
        out_dir,
        report_params=params.report,
        generator_path=train.generator,
        w_avg_path=evaluation.w_avg,
        curves_path=train.curves,
        metrics_path=evaluation.provenance,  # the records: numbers with what produced them
        previous_runs=previous_runs(info),
        params_diff=params_diff(default, params.model_dump(mode="json")) if default else (),
        dataset_stats=json.loads(STATS_FILE.read_text()) if STATS_FILE.exists() else None,
        skipped_summary=skipped_summary(),
        stage_timings={stage: timings[stage] for stage in STAGES if stage in timings},
        hardware=describe_hardware(),
        title=f"StyleGAN report: {_dataset_title(params)}",
        device=str(resolve_device(params.eval.device)),
        real_images=real,
        real_labels=labels,
        network_parameters=network_parameters(train.generator_config),
    )
    with reopen_run(info) as run:
        run.log_report(out_dir, "report")
    return index


def _dataset_title(params: Params) -> str:
    data: Mapping[str, Any] = params.data.model_dump()
    source = data["source"]
    detail = {"demo": "procedural flowers", "ffhq": data["ffhq"]["variant"], "folder": data["folder"]["path"]}
    return f"{source} ({detail.get(source, source)}) at {params.prepare.resolution}px"
