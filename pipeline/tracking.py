"""MLflow tracking for the pipeline: one MLflow run per pipeline run, shared by the stages.

The train stage opens the run with :func:`start_run`, which records its id in `models/mlflow_run.json`
(a DVC output, so every experiment keeps its own); later stages log into the same run with
:func:`reopen_run`. Each dataset gets its own MLflow experiment (:func:`experiment_name`).

The store is `MLFLOW_TRACKING_URI` when set, else `sqlite:///<repo>/mlflow.db`, where `<repo>` is
`DVC_ROOT`: DVC points it at the project even when `dvc exp run --temp` runs the stages in a temporary
copy, so experiments and the workspace share one store. Artifacts of such a local store go next to the
database (`mlartifacts/<experiment name>/`), never into the current directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.utils.time import get_current_time_millis
from PIL import Image

from pipeline.params import DataParams, Params

RUN_INFO_FILE = "models/mlflow_run.json"
EVAL_METRICS_FILE = "metrics/eval.json"

# MLflow's limits on one log_batch request.
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

# Git pathspecs: the whole work tree but for the files DVC writes while running stages.
_NOT_DIRTYING = (":(top)", ":(top,exclude)dvc.lock", ":(top,exclude,glob)**/.gitignore")

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RunInfo:
    """Where the pipeline's MLflow run lives; the contents of `models/mlflow_run.json`."""

    run_id: str
    experiment_id: str
    tracking_uri: str

    def save(self, path: str | Path = RUN_INFO_FILE) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path = RUN_INFO_FILE) -> RunInfo:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no MLflow run recorded: {path} does not exist (run the train stage)"
            ) from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, source: str = RUN_INFO_FILE) -> RunInfo:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from None
        keys = ("run_id", "experiment_id", "tracking_uri")
        missing = [key for key in keys if not isinstance(raw, dict) or not isinstance(raw.get(key), str)]
        if missing:
            raise ValueError(f"{source}: missing or non-string key(s) {', '.join(missing)}")
        return cls(**{key: raw[key] for key in keys})

    def ui_url(self) -> str | None:
        """The run's page, when the store is a tracking server (http/https)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def default_tracking_uri() -> str:
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def dataset_name(data: DataParams) -> str:
    if data.source == "demo":
        return "demo"
    if data.source == "ffhq":
        return f"ffhq-{data.ffhq.variant}"
    if data.source == "folder":
        return f"folder-{Path(data.folder.path or '').name}"
    return data.source


def experiment_name(params: Params) -> str:
    """One MLflow experiment per dataset and training resolution, e.g. `stylegan/ffhq-images1024-256px`."""
    return f"stylegan/{dataset_name(params.data)}-{params.prepare.resolution}px"


def flatten_params(params: Params) -> dict[str, str]:
    """`{"train.gamma": "0.05", ...}`. Non-strings are written as JSON (`true`, `null`, `[0, 1]`), the
    way `dvc exp run -S` takes them back."""
    flat = _flatten(params.model_dump(mode="json"))
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in flat.items()}


def kimg_step(kimg: float) -> int:
    """The MLflow step for a point in training: images shown, so ticks of any size share one axis."""
    return round(kimg * 1000)


class PipelineRun:
    """An open MLflow run; every method logs into it. Get one from :func:`start_run` or :func:`reopen_run`."""

    def __init__(self, client: MlflowClient, info: RunInfo) -> None:
        self.client = client
        self.info = info

    def log_params(self, params: Params) -> None:
        """Log the params flattened. Ones already logged keep their value (MLflow params never change)."""
        flat = flatten_params(params)
        logged = self.client.get_run(self.info.run_id).data.params
        changed = sorted(key for key, value in flat.items() if key in logged and logged[key] != value)
        if changed:
            log.warning(
                "MLflow run %s keeps its logged values of %s; the new values are not recorded",
                self.info.run_id,
                ", ".join(f"{key} ({logged[key]} -> {flat[key]})" for key in changed),
            )
        new = [Param(key, value) for key, value in flat.items() if key not in logged]
        for batch in _batches(new, _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.info.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = get_current_time_millis()
        entries = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for batch in _batches(entries, _MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.info.run_id, metrics=batch)

    def log_tick(self, stats: Mapping[str, float], kimg: float) -> None:
        """Per-tick training statistics, at step :func:`kimg_step` (kimg)."""
        self.log_metrics(stats, step=kimg_step(kimg))

    def log_image(self, image: Image.Image | np.ndarray, key: str, kimg: float | None = None) -> None:
        """An image (e.g. a sample grid; PIL or HWC uint8 array), shown in MLflow's image view by step."""
        step = kimg_step(kimg) if kimg is not None else 0
        self.client.log_image(self.info.run_id, image, key=key, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole folder (e.g. the final generator, the report); a folder keeps its name unless
        `artifact_path` gives another."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.info.run_id, str(path), artifact_path or path.resolve().name)
        elif path.is_file():
            self.client.log_artifact(self.info.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or folder")

    def log_eval_metrics(self, path: str | Path = EVAL_METRICS_FILE, step: int = 0) -> dict[str, float]:
        """The final metrics: every finite number in the metrics JSON (nested keys joined by dots)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no metrics to log: {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        metrics = {
            key: float(value)
            for key, value in _flatten(raw).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        }
        self.log_metrics(metrics, step=step)
        return metrics

    def set_provenance_tags(self, repo: str | Path = ".") -> None:
        """Tag the code and data state: git commit and dirty flag, DVC experiment, dvc.lock stage hashes."""
        tags = {**_git_tags(Path(repo)), **_dvc_tags(Path(repo))}
        self.client.log_batch(self.info.run_id, tags=[RunTag(key, value) for key, value in tags.items()])


@contextmanager
def start_run(
    params: Params,
    *,
    resume_run_id: str | None = None,
    run_info_file: str | Path = RUN_INFO_FILE,
    tracking_uri: str | None = None,
) -> Iterator[PipelineRun]:
    """Open the pipeline's MLflow run (a new one, or `resume_run_id` when training resumes).

    Logs the params and provenance tags and records the run in `run_info_file`. The run is named after
    the DVC experiment when `dvc exp run` runs the stage. It ends FINISHED, or FAILED/KILLED when the
    block raises.
    """
    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    run = _resumable_run(client, resume_run_id)
    if run is None:
        experiment_id = _get_or_create_experiment(client, experiment_name(params), uri)
        run = client.create_run(experiment_id, run_name=os.environ.get("DVC_EXP_NAME"))
    info = RunInfo(run_id=run.info.run_id, experiment_id=run.info.experiment_id, tracking_uri=uri)
    pipeline_run = PipelineRun(client, info)
    with _terminate_on_exit(pipeline_run):
        info.save(run_info_file)
        pipeline_run.log_params(params)
        pipeline_run.set_provenance_tags()
        yield pipeline_run


@contextmanager
def reopen_run(info: RunInfo | str | Path = RUN_INFO_FILE) -> Iterator[PipelineRun]:
    """Log into the run the train stage started (evaluate, report); refreshes the provenance tags."""
    if not isinstance(info, RunInfo):
        info = RunInfo.load(info)
    client = MlflowClient(tracking_uri=info.tracking_uri)
    client.update_run(info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    pipeline_run = PipelineRun(client, info)
    with _terminate_on_exit(pipeline_run):
        pipeline_run.set_provenance_tags()
        yield pipeline_run


@contextmanager
def _terminate_on_exit(run: PipelineRun) -> Iterator[None]:
    status = RunStatus.FINISHED
    try:
        yield
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except BaseException:
        status = RunStatus.FAILED
        raise
    finally:
        run.client.set_terminated(run.info.run_id, status=RunStatus.to_string(status))


def _resumable_run(client: MlflowClient, run_id: str | None) -> Run | None:
    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        log.warning("MLflow run %s to resume is not in %s; starting a new run", run_id, client.tracking_uri)
        return None
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    return run


def _get_or_create_experiment(client: MlflowClient, name: str, uri: str) -> str:
    if experiment := client.get_experiment_by_name(name):
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        artifact_location = (store_dir / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:  # created meanwhile by a concurrent experiment
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


def _git_tags(repo: Path) -> dict[str, str]:
    commit = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {}
    # Dirty means code or params differ from the commit; the files DVC itself rewrites do not count
    # (dvc.lock is tagged stage by stage).
    status = _git(repo, "status", "--porcelain", "--", *_NOT_DIRTYING) or ""
    return {"mlflow.source.git.commit": commit, "git.dirty": "true" if status else "false"}


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def _dvc_tags(repo: Path) -> dict[str, str]:
    """The DVC experiment (set by `dvc exp run`) and an md5 of each stage's `dvc.lock` entry."""
    tags = {}
    if name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = name
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline_rev"] = baseline
    lock_file = repo / "dvc.lock"
    if lock_file.exists():
        stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {})
        for stage, entry in stages.items():
            canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            tags[f"dvc.lock.{stage}"] = hashlib.md5(canonical.encode()).hexdigest()
    return tags


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
