"""Training goes on when its MLflow tracking server goes away.

A training run logs every tick (curves, sample grids) and ends with the model. When the server stops
answering mid-training, :class:`PendingRecords` keeps what could not be sent on disk, in order
(`<DVC_ROOT>/.cache/mlflow-pending/<run id>/`), says so once, and lets the training go on. It asks the
server again at most once a minute (its `/health`, a quick request); when it answers, the kept records are
sent, oldest first, with their original times and steps, and logging goes on as before. Records still kept
when the training ends are sent by the next stage that opens the run (`reopen_run`: evaluate, report).

While the server answers, a failing request is retried briefly (MLflow's own default is 7 retries over about
4 minutes, a stall of the training) since the record is kept anyway; settings of your own for
`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `..._BACKOFF_FACTOR` or `..._TIMEOUT` are left as they are.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    PERMISSION_DENIED,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
    ErrorCode,
)
from PIL import Image

PENDING_ROOT = Path(".cache/mlflow-pending")
RECORDS_FILE = "records.jsonl"
RETRY_SECONDS = 60.0
QUICK_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
#: MLflow errors that are the server's answer to a bad request, not a sign that it is away.
_REFUSALS = frozenset(
    ErrorCode.Name(code)
    for code in (
        BAD_REQUEST,
        INVALID_PARAMETER_VALUE,
        INVALID_STATE,
        PERMISSION_DENIED,
        RESOURCE_ALREADY_EXISTS,
        RESOURCE_DOES_NOT_EXIST,
        UNAUTHENTICATED,
    )
)
_MAX_METRICS_PER_BATCH = 1000

log = logging.getLogger(__name__)

#: Writes a record's files (if any) into the folder it is given and returns the record (JSON).
Keep = Callable[[Path], dict[str, Any]]


def pending_dir(run_id: str) -> Path:
    """Where the records of run `run_id` wait: in the DVC project (DVC_ROOT), shared by its experiments."""
    return Path(os.environ.get("DVC_ROOT", ".")).resolve() / PENDING_ROOT / run_id


def is_unreachable(error: BaseException) -> bool:
    """Whether `error` says the tracking server could not be reached or did not answer in time (rather
    than that it refused the request)."""
    if isinstance(error, MlflowException):
        return error.error_code not in _REFUSALS
    return isinstance(error, requests.RequestException | OSError)


def server_answers(tracking_uri: str, timeout: float = 5.0) -> bool:
    """A quick `/health` request to an http(s) tracking server; other stores are just tried."""
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def quick_retries() -> Iterator[None]:
    """MLflow's HTTP retries cut to a few seconds for the block, unless the environment sets them."""
    added = {key: value for key, value in QUICK_RETRIES.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class PendingRecords:
    """The records of one run that could not reach its tracking server, kept in `directory`."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        directory: str | os.PathLike[str] | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.directory = Path(directory) if directory is not None else pending_dir(run_id)
        self.retry_seconds = retry_seconds
        self._away_since: float | None = None
        self._last_try = 0.0

    @property
    def offline(self) -> bool:
        """Whether the server did not answer the last request (records are being kept)."""
        return self._away_since is not None

    def count(self) -> int:
        return len(self._read())

    def deliver(self, send: Callable[[], object], keep: Keep) -> None:
        """`send()` the record to the server; when it cannot be reached (now, or at the last try, less than
        `retry_seconds` ago), `keep` it on disk instead. Errors that are the server's answer are raised."""
        if self.offline and not self._back_online():
            self._keep(keep)
            return
        try:
            with quick_retries():
                send()
        except Exception as error:
            if not is_unreachable(error):
                raise
            self._went_away(error)
            self._keep(keep)

    def flush(self) -> bool:
        """Send the kept records, oldest first. False, with the rest still kept, when the server stops
        answering; a record the server refuses is dropped with a warning."""
        records = self._read()
        for done, record in enumerate(records):
            try:
                with quick_retries():
                    self._send(record)
            except Exception as error:
                if is_unreachable(error):
                    self._write(records[done:])
                    return False
                log.warning("MLflow run %s: dropped a kept %s record the server refused: %s",
                            self.run_id, record.get("op"), error)  # fmt: skip
        if self.directory.exists():
            shutil.rmtree(self.directory)
        if records:
            log.info(
                "MLflow run %s: sent the %d records kept while the server was away", self.run_id, len(records)
            )
        return True

    # --- internals --------------------------------------------------------------------------------

    def _back_online(self) -> bool:
        now = time.monotonic()
        if now - self._last_try < self.retry_seconds:
            return False
        self._last_try = now
        if not server_answers(self.client.tracking_uri) or not self.flush():
            return False
        log.warning(
            "MLflow tracking server %s answers again after %.0f s: the records kept meanwhile were sent",
            self.client.tracking_uri,
            now - (self._away_since or now),
        )
        self._away_since = None
        return True

    def _went_away(self, error: BaseException) -> None:
        now = time.monotonic()
        self._away_since, self._last_try = now, now
        log.warning(
            "MLflow tracking server %s does not answer (%s). Training goes on; what it would log is kept "
            "in %s and sent when the server answers again (asked every %.0f s).",
            self.client.tracking_uri,
            _first_line(error),
            self.directory,
            self.retry_seconds,
        )

    def _keep(self, keep: Keep) -> None:
        folder = self.directory / "files" / str(time.time_ns())
        record = keep(folder)
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / RECORDS_FILE).open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = (self.directory / RECORDS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a process killed while writing it
                continue
        return records

    def _write(self, records: list[dict[str, Any]]) -> None:
        path = self.directory / RECORDS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(record) + "\n" for record in records))
        tmp.replace(path)

    def _send(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "metrics":
            on = {key: record[key] for key in ("dataset_name", "dataset_digest") if record.get(key)}
            metrics = [
                Metric(key, value, record["timestamp"], record["step"], model_id=record.get("model_id"),
                       run_id=self.run_id, **on)
                for key, value in record["values"].items()
            ]  # fmt: skip
            for start in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start : start + _MAX_METRICS_PER_BATCH])
        elif op == "image":
            with Image.open(self.directory / record["file"]) as image:
                image.load()
                self.client.log_image(self.run_id, image, key=record["key"], step=record["step"])
        elif op == "artifact":
            path = self.directory / record["file"]
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), record["artifact_path"])
            else:
                self.client.log_artifact(self.run_id, str(path), record["artifact_path"])
        elif op == "terminate":
            self.client.set_terminated(self.run_id, status=record["status"], end_time=record["end_time"])
        else:
            raise ValueError(f"unknown kept record {op!r}")


def keep_metrics(values: dict[str, float], timestamp: int, step: int, **on: str | None) -> Keep:
    return lambda folder: {"op": "metrics", "values": values, "timestamp": timestamp, "step": step, **on}


def keep_image(image: Image.Image | np.ndarray, key: str, step: int) -> Keep:
    """A PNG of the image (PIL, or an HWC uint8 array)."""

    def keep(folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        picture.save(folder / "image.png")
        return {"op": "image", "file": (folder / "image.png").relative_to(folder.parents[1]).as_posix(),
                "key": key, "step": step}  # fmt: skip

    return keep


def keep_artifact(path: Path, artifact_path: str | None) -> Keep:
    """A copy of the file or folder, under its own name (MLflow names the artifact after it)."""

    def keep(folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / path.name
        if path.is_dir():
            shutil.copytree(path, copy)
        else:
            shutil.copy2(path, copy)
        return {"op": "artifact", "file": copy.relative_to(folder.parents[1]).as_posix(),
                "artifact_path": artifact_path}  # fmt: skip

    return keep


def keep_end(status: str, end_time: int) -> Keep:
    return lambda folder: {"op": "terminate", "status": status, "end_time": end_time}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
