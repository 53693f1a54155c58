"""MLflow tracking for the pipeline: one MLflow run per pipeline run, shared by the stages.

The train stage opens the run with :func:`start_run`, which records its id in `models/mlflow_run.json`
(a DVC output, so every experiment keeps its own); later stages log into the same run with
:func:`reopen_run`. Each dataset gets its own MLflow experiment (:func:`experiment_name`).

The store is `MLFLOW_TRACKING_URI` when set, else `sqlite:///<repo>/mlflow.db`, where `<repo>` is
`DVC_ROOT`: DVC points it at the project even when `dvc exp run --temp` runs the stages in a temporary
copy, so experiments and the workspace share one store. Artifacts of such a local store go next to the
database (`mlartifacts/<experiment name>/`), never into the current directory.

Experiments are tagged as model development (MLflow 3's UI then opens them on the runs table, not on the
GenAI overview); runs are named after the DVC experiment, else after the data, model and main params; the
training data is logged as a dataset input whose digest is DVC's hash of `data/shards`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.time import get_current_time_millis
from PIL import Image

from pipeline.params import PARAMS_FILE, DataParams, Params, load_params
from pipeline.stage_params import RUNTIME_ONLY
from pipeline.tracking_offline import (
    Keep,
    PendingRecords,
    keep_artifact,
    keep_end,
    keep_image,
    keep_metrics,
)

RUN_INFO_FILE = "models/mlflow_run.json"
EVAL_METRICS_FILE = "metrics/eval.json"
SHARDS_DIR = "data/shards"

# The experiment tag MLflow 3's UI reads to choose an experiment's landing page.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"

# MLflow's limits on one log_batch request.
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

# The process that holds a run RUNNING, "<host> <pid> <process start time>": a later run on the same host
# marks the run KILLED when that process is gone (kill -9, a preempted job), instead of leaving it RUNNING.
OWNER_TAG = "pipeline.owner"
CONTINUES_TAG = "pipeline.continues_run"  # a new run that resumed the checkpoints of another one
DVC_EXPERIMENT_TAG = "dvc.exp_name"  # the DVC experiment that logged the run (none: a workspace run)
GENERATOR_RUN_TAG = "pipeline.generator_run"  # a run that evaluates a generator another run trained

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


def run_name(params: Params) -> str:
    """The DVC experiment's name when `dvc exp run` runs the stage, else what was trained on what, e.g.
    `demo-32px stylegan2 15kimg gamma=0.05 ada`."""
    if name := os.environ.get("DVC_EXP_NAME"):
        return name
    t = params.train
    parts = [training_dataset_name(params), params.model.arch, f"{t.kimg:g}kimg"]
    if t.gamma is not None:
        parts.append(f"gamma={t.gamma:g}")
    parts.append(t.aug)
    return " ".join(parts)


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

    def __init__(self, client: MlflowClient, info: RunInfo, pending: PendingRecords | None = None) -> None:
        self.client = client
        self.info = info
        # Where records wait while the tracking server is away (training only; see pipeline.tracking_offline).
        self.pending = pending

    def _send(self, send: Callable[[], object], keep: Keep) -> None:
        if self.pending is None:
            send()
        else:
            self.pending.deliver(send, keep)

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

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        step: int = 0,
        model_id: str | None = None,
        dataset: Dataset | None = None,
    ) -> None:
        """Numbers at `step`; with `model_id` they are also the logged model's metrics, with `dataset`
        they are marked as measured on that dataset (see :meth:`log_dataset`)."""
        now = get_current_time_millis()
        on = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset else {}
        entries = [
            Metric(key, float(value), now, step, model_id=model_id, run_id=self.info.run_id, **on)
            for key, value in metrics.items()
        ]

        def send() -> None:
            for batch in _batches(entries, _MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.info.run_id, metrics=batch)

        values = {key: float(value) for key, value in metrics.items()}
        self._send(send, keep_metrics(values, now, step, model_id=model_id, **on))

    def log_tick(self, stats: Mapping[str, float], kimg: float) -> None:
        """Per-tick training statistics, at step :func:`kimg_step` (kimg)."""
        self.log_metrics(stats, step=kimg_step(kimg))

    def log_image(self, image: Image.Image | np.ndarray, key: str, kimg: float | None = None) -> None:
        """An image (e.g. a sample grid; PIL or HWC uint8 array), shown in MLflow's image view by step."""
        step = kimg_step(kimg) if kimg is not None else 0
        self._send(
            lambda: self.client.log_image(self.info.run_id, image, key=key, step=step),
            keep_image(image, key, step),
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole folder (e.g. the final generator, the report); a folder keeps its name unless
        `artifact_path` gives another."""
        path = Path(path)
        if path.is_dir():
            artifact_path = artifact_path or path.resolve().name
            send = partial(self.client.log_artifacts, self.info.run_id, str(path), artifact_path)
        elif path.is_file():
            send = partial(self.client.log_artifact, self.info.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or folder")
        self._send(send, keep_artifact(path, artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        """End the run (FINISHED, FAILED or KILLED). Records still kept for an absent server wait for the
        next stage that opens the run, which sends them."""
        end_time = get_current_time_millis()
        self._send(
            lambda: self.client.set_terminated(self.info.run_id, status=status, end_time=end_time),
            keep_end(status, end_time),
        )
        if self.pending is not None and self.pending.offline:
            log.warning(
                "MLflow tracking server %s still does not answer: %d records of run %s stay in %s; the next "
                "stage that opens the run (evaluate) sends them",
                self.info.tracking_uri,
                self.pending.count(),
                self.info.run_id,
                self.pending.directory,
            )

    def log_report(self, folder: str | Path, artifact_path: str = "report", page: str = "index.html") -> None:
        """A report folder (a page and the images beside it) under `artifact_path`, the page itself made
        self-contained (images inlined) so that MLflow's artifact preview, which shows it alone, shows the
        images too. The other files stay beside it for download."""
        from pipeline.html_inline import inline_media

        folder = Path(folder)
        if not (folder / page).is_file():
            raise FileNotFoundError(f"cannot log report {folder}: it has no {page}")
        for entry in sorted(folder.iterdir()):
            if entry.name != page:
                self.log_artifact(entry, f"{artifact_path}/{entry.name}" if entry.is_dir() else artifact_path)
        self.client.log_text(self.info.run_id, inline_media(folder / page), f"{artifact_path}/{page}")

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

    def log_dataset(
        self, path: str | Path, name: str, context: str = "training", profile: Mapping[str, Any] | None = None
    ) -> Dataset:
        """The data at `path` as an MLflow dataset input of the run, its digest DVC's hash of `path` (what
        `dvc.lock` records for it; a folder's ends in `.dir`)."""
        from pipeline.dvc_hash import dvc_hash

        hashed = dvc_hash(path)
        source = {"path": Path(path).as_posix(), "dvc_md5": hashed.md5}
        dataset = Dataset(
            name=name,
            digest=hashed.md5,
            source_type="dvc",
            source=json.dumps(source),
            profile=json.dumps({"size": hashed.size, "files": hashed.nfiles, **(profile or {})}),
        )
        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
        self.client.log_inputs(self.info.run_id, datasets=[DatasetInput(dataset, tags)])
        return dataset

    def training_dataset(self) -> Dataset | None:
        """The dataset logged with context `training` (see :meth:`log_dataset`), if any."""
        for dataset_input in self.client.get_run(self.info.run_id).inputs.dataset_inputs:
            if any(t.key == MLFLOW_DATASET_CONTEXT and t.value == "training" for t in dataset_input.tags):
                return dataset_input.dataset
        return None

    def log_generator(
        self, network: str | Path, w_avg: str | Path | None = None, config: str | Path | None = None
    ) -> str:
        """The generator as an MLflow model of this run (see :mod:`pipeline.logged_model`); its model id."""
        from pipeline.logged_model import log_generator

        return log_generator(self.info.run_id, self.info.tracking_uri, network, w_avg, config).model_id

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
    shards_dir: str | Path | None = SHARDS_DIR,
    keep_going_offline: bool = False,
) -> Iterator[PipelineRun]:
    """Open the pipeline's MLflow run (a new one, or `resume_run_id` when training resumes).

    Logs the params, provenance tags and the training data (`shards_dir`, when it exists) and records the
    run in `run_info_file`. The run is named by :func:`run_name`. It ends FINISHED, or FAILED/KILLED when
    the block raises. `resume_run_id` is continued only if it was logged with the same params; otherwise
    (another experiment resuming its checkpoints) a new run is started, tagged with the one it continues.
    Runs of the experiment left RUNNING by a process of this host that is gone are marked KILLED first.

    The store must answer when the run opens. With `keep_going_offline` (training), a server that stops
    answering later stops nothing: what the run logs meanwhile waits on disk and is sent when it answers
    again (see :mod:`pipeline.tracking_offline`).
    """
    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    if resume_run_id is not None:
        PendingRecords(client, resume_run_id).flush()  # what it kept while the server was away, if anything
    run = _resumable_run(client, resume_run_id, params)
    if run is None:
        experiment_id = _get_or_create_experiment(client, experiment_name(params), uri)
        mark_abandoned_runs(client, experiment_id)
        run = client.create_run(experiment_id, run_name=run_name(params))
        if resume_run_id is not None:
            client.set_tag(run.info.run_id, CONTINUES_TAG, resume_run_id)
    client.set_tag(run.info.run_id, OWNER_TAG, _this_process())
    info = RunInfo(run_id=run.info.run_id, experiment_id=run.info.experiment_id, tracking_uri=uri)
    pending = PendingRecords(client, info.run_id) if keep_going_offline else None
    pipeline_run = PipelineRun(client, info, pending)
    with _terminate_on_exit(pipeline_run):
        info.save(run_info_file)
        pipeline_run.log_params(params)
        pipeline_run.set_provenance_tags()
        if shards_dir is not None and Path(shards_dir).is_dir():
            profile = _shards_profile(shards_dir)
            pipeline_run.log_dataset(shards_dir, training_dataset_name(params), profile=profile)
        yield pipeline_run


@contextmanager
def reopen_run(info: RunInfo | str | Path = RUN_INFO_FILE) -> Iterator[PipelineRun]:
    """Log into the run the train stage started (evaluate, report); refreshes the provenance tags. Records
    the training kept while the tracking server was away are sent first. When another DVC experiment (or the
    workspace) trained the generator, this one logs into a run of its own (see :func:`own_run`)."""
    if not isinstance(info, RunInfo):
        info = RunInfo.load(info)
    client = MlflowClient(tracking_uri=info.tracking_uri)
    PendingRecords(client, info.run_id).flush()
    info = own_run(client, info)
    mark_abandoned_runs(client, info.experiment_id, keep=info.run_id)
    client.update_run(info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.set_tag(info.run_id, OWNER_TAG, _this_process())
    pipeline_run = PipelineRun(client, info)
    with _terminate_on_exit(pipeline_run):
        pipeline_run.set_provenance_tags()
        yield pipeline_run


def own_run(client: MlflowClient, trained: RunInfo) -> RunInfo:
    """The run this pipeline run's later stages log into, given the run that trained its generator.

    That run itself when this DVC experiment (or the workspace) trained the generator. When another one
    did (the train stage was up to date, or DVC restored it from its run cache: a sweep over evaluation
    params, two sweeps with a point in common), a run of its own, started by the first stage that asks
    and found again by the next, tagged with the run that trained the generator (`pipeline.generator_run`):
    experiments never log into each other's runs."""
    run = client.get_run(trained.run_id)
    experiment = os.environ.get("DVC_EXP_NAME")
    if run.data.tags.get(DVC_EXPERIMENT_TAG) == experiment:
        return trained
    query = f"tags.`{GENERATOR_RUN_TAG}` = '{trained.run_id}'"
    for found in client.search_runs([trained.experiment_id], filter_string=query):
        if found.data.tags.get(DVC_EXPERIMENT_TAG) == experiment:
            return RunInfo(found.info.run_id, trained.experiment_id, trained.tracking_uri)
    params = load_params() if Path(PARAMS_FILE).is_file() else None
    name = run_name(params) if params is not None else experiment or run.info.run_name
    created = client.create_run(
        trained.experiment_id, run_name=name, tags={GENERATOR_RUN_TAG: trained.run_id}
    )
    info = RunInfo(created.info.run_id, trained.experiment_id, trained.tracking_uri)
    if params is not None:
        PipelineRun(client, info).log_params(params)
    else:
        logged = [Param(key, value) for key, value in run.data.params.items()]
        for batch in _batches(logged, _MAX_PARAMS_PER_BATCH):
            client.log_batch(info.run_id, params=batch)
    if run.inputs.dataset_inputs:
        client.log_inputs(info.run_id, datasets=run.inputs.dataset_inputs)
    log.info(
        "MLflow run %s: %s evaluates the generator that run %s (%s) trained",
        info.run_id,
        f"DVC experiment {experiment}" if experiment else "the workspace",
        trained.run_id,
        f"DVC experiment {run.data.tags[DVC_EXPERIMENT_TAG]}"
        if DVC_EXPERIMENT_TAG in run.data.tags
        else "the workspace",
    )
    return info


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
        run.end(RunStatus.to_string(status))


def _resumable_run(client: MlflowClient, run_id: str | None, params: Params) -> Run | None:
    """The run to continue: `run_id`, when it exists and was logged with these params by the same DVC
    experiment (or both in the workspace). A run folder that started from a copy of another one's
    checkpoint (:mod:`pipeline.run_folders`) also has its MLflow run id: the new run is tagged as
    continuing that run, and never logs into it."""
    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        log.warning("MLflow run %s to resume is not in %s; starting a new run", run_id, client.tracking_uri)
        return None
    logged_by, experiment = run.data.tags.get(DVC_EXPERIMENT_TAG), os.environ.get("DVC_EXP_NAME")
    if logged_by != experiment:
        log.info(
            "a new MLflow run continues the checkpoints of run %s, which %s logged",
            run_id,
            f"DVC experiment {logged_by}" if logged_by else "a workspace run",
        )
        return None
    logged, flat = run.data.params, flatten_params(params)
    changed = sorted(
        key
        for key, value in flat.items()
        if key in logged and logged[key] != value and key not in RUNTIME_ONLY
    )
    if changed:
        shown = ", ".join(f"{key} ({logged[key]} -> {flat[key]})" for key in changed[:5])
        log.info(
            "a new MLflow run continues the checkpoints of run %s, whose params differ: %s", run_id, shown
        )
        return None
    mark_abandoned_runs(client, run.info.experiment_id, keep=run_id)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    return run


def mark_abandoned_runs(client: MlflowClient, experiment_id: str, keep: str | None = None) -> list[str]:
    """Mark KILLED the runs of the experiment left RUNNING by a process of this host that is gone (killed
    with SIGKILL, preempted, a power cut: nothing was left to end them). Runs of other hosts and run
    `keep` are left alone. Returns the ids marked."""
    marked = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        owner = run.data.tags.get(OWNER_TAG)
        if run.info.run_id == keep or owner is None or _owner_alive(owner) is not False:
            continue
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
        log.warning(
            "MLflow run %s was left RUNNING by %s, which is gone: marked KILLED", run.info.run_id, owner
        )
        marked.append(run.info.run_id)
    return marked


def _this_process() -> str:
    return f"{socket.gethostname()} {os.getpid()} {_process_start(os.getpid())}"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), which tells it from a later one that
    got its pid; "?" where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _owner_alive(owner: str) -> bool | None:
    """Whether the process of an owner tag still runs; None when unknown (another host, a foreign tag)."""
    try:
        host, pid_text, started = owner.split(" ")
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return started == "?" or _process_start(pid) == started


def training_dataset_name(params: Params) -> str:
    """The name of the training data as an MLflow dataset, e.g. `demo-32px`."""
    return f"{dataset_name(params.data)}-{params.prepare.resolution}px"


def _shards_profile(shards_dir: str | Path) -> dict[str, Any]:
    """Image count and resolution from the shard index, when it has them."""
    try:
        index = json.loads((Path(shards_dir) / "index.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {key: index[key] for key in ("count", "resolution") if key in index}


def _get_or_create_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, created when missing; tagged as model development unless it has a kind."""
    if experiment := client.get_experiment_by_name(name):
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        artifact_location = (store_dir / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT}
        )
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
        tags[DVC_EXPERIMENT_TAG] = name
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
