"""MLflow through a real `mlflow server` that serves the artifacts (issue 14): what the pipeline uploads over
HTTP (the model, sample grids, the report) downloads again byte for byte; the server going away in the
middle of a training stops nothing: the train stage warns, keeps the records on disk and finishes, and
they reach the server when it is back. Plus the kept records' own rules, on a local store."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode
from PIL import Image

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.params import Params
from pipeline.shards import prepare_shards
from pipeline.tracking import RunInfo, reopen_run, start_run
from pipeline.tracking_offline import PendingRecords, is_unreachable, keep_metrics

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a real server, a training; even the local store takes seconds to create


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TrackingServer:
    """`mlflow server` serving artifacts over HTTP (`mlflow-artifacts:/`), stoppable and restartable on the
    same port, database and artifact folder. Its own process group: its workers outlive a plain kill."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        store, artifacts = f"sqlite:///{self.folder}/mlflow.db", str(self.folder / "artifacts")
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                   "--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1"]  # fmt: skip
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start:\n{(self.folder / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)  # gone at once, as a crashed or preempted server
        self.process.wait()
        deadline = time.monotonic() + 30
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def server(tmp_path: Path):
    folder = tmp_path / "server"
    folder.mkdir()
    served = TrackingServer(folder)
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DVC_ROOT", str(work))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return work


def test_model_grids_and_report_uploaded_over_http_download_again(
    server: TrackingServer, workdir: Path, tmp_path: Path
):
    model = workdir / "models/G_ema.safetensors"
    model.parent.mkdir()
    model.write_bytes(np.random.default_rng(0).bytes(300_000))
    grid = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    report = workdir / "reports"
    (report / "images").mkdir(parents=True)
    Image.fromarray(grid).save(report / "images/grid.png")
    (report / "index.html").write_text('<h1>report</h1><img src="images/grid.png">')

    with start_run(Params(), tracking_uri=server.url, shards_dir=None) as run:
        run.log_image(grid, key="samples", kimg=0.5)
        run.log_artifact(model, "model")
    with reopen_run(run.info) as reopened:
        reopened.log_report(report)

    client = MlflowClient(tracking_uri=server.url)
    logged = client.get_run(run.info.run_id)
    assert logged.info.artifact_uri.startswith("mlflow-artifacts:/")  # served by the server, over HTTP
    assert logged.info.status == "FINISHED"
    down = tmp_path / "downloaded"
    for path in ("model", "report", "images"):
        client.download_artifacts(run.info.run_id, path, str(down))
    assert (down / "model/G_ema.safetensors").read_bytes() == model.read_bytes()
    assert (down / "report/images/grid.png").read_bytes() == (report / "images/grid.png").read_bytes()
    assert "data:image/png;base64," in (down / "report/index.html").read_text()  # inlined for the preview
    [sample] = [
        p for p in (down / "images").iterdir() if p.name.startswith("samples") and "compressed" not in p.name
    ]
    assert np.array_equal(np.asarray(Image.open(sample).convert("RGB")), grid)
    # ... and nothing went through the server's filesystem from this side: the files are in its store.
    assert list((server.folder / "artifacts").rglob("G_ema.safetensors"))


def _tiny_project(folder: Path) -> dict:
    raw = folder / "data/raw"
    generate_demo(raw, count=32, resolution=16, workers=1)
    prepare_shards(raw, read_manifest(raw), folder / "data/shards", resolution=16, workers=1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(z_dim=16, w_dim=16, channel_base=128, channel_max=16)
    # Many short ticks, each logging its curves and a sample grid: the server goes away after the first.
    params["train"].update(kimg=0.48, batch=8, tick_kimg=0.048, snapshot_kimg=0.24, workers=0, aug="noaug")
    params["train"]["sample_seeds"] = [0, 1, 2, 3]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def test_training_goes_on_when_the_tracking_server_goes_away_and_catches_up_when_it_is_back(
    server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project = tmp_path / "project"
    project.mkdir()
    _tiny_project(project)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": server.url, "DVC_ROOT": str(project)}
    env.pop("DVC_EXP_NAME", None)
    log_path = tmp_path / "train.log"
    with log_path.open("w") as log:
        train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        client = MlflowClient(tracking_uri=server.url)
        deadline = time.monotonic() + 600
        while True:  # the first tick reached the server: take it away
            run_file = project / "models/mlflow_run.json"
            if run_file.exists():
                info = RunInfo.load(run_file)
                if client.get_run(info.run_id).data.metrics:
                    break
            assert train.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no tick reached the server"
            time.sleep(0.3)
        server.stop()
        returncode = train.wait(timeout=900)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, signal.SIGKILL)
            train.wait()
    output = log_path.read_text()
    assert returncode == 0, output[-4000:]
    assert f"MLflow tracking server {server.url} does not answer" in output
    assert "Training goes on" in output and "still does not answer" in output
    assert (project / "models/G_ema.safetensors").is_file()
    curves = (project / "plots/train.tsv").read_text().splitlines()
    pending = PendingRecords(client, info.run_id, project / ".cache/mlflow-pending" / info.run_id)
    assert pending.count() > 0

    server.start()
    monkeypatch.chdir(project)
    monkeypatch.setenv("DVC_ROOT", str(project))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    with reopen_run(info):  # what evaluate does first: the kept records go to the server
        pass
    assert not pending.directory.exists()
    logged = client.get_run(info.run_id)
    assert logged.info.status == "FINISHED"
    steps = {point.step for point in client.get_metric_history(info.run_id, "loss_D")}
    assert len(steps) == len(curves) - 1  # every tick of the curves file (less its header) is on the server
    # Sample grids come with snapshots: the last one, logged while the server was away, is there too.
    images = [item.path for item in client.list_artifacts(info.run_id, "images")]
    image_steps = {int(re.search(r"\+step\+(\d+)\+", path)[1]) for path in images if "compressed" not in path}
    assert image_steps <= steps and max(steps) in image_steps
    down = client.download_artifacts(info.run_id, "model/G_ema.safetensors", str(tmp_path))
    assert Path(down).read_bytes() == (project / "models/G_ema.safetensors").read_bytes()


# --- the kept records' rules, without a server -----------------------------------------------------------


def _away(*args, **kwargs):
    raise MlflowException(
        "API request to http://mlflow.internal/api/2.0/mlflow/runs/log-batch failed: refused"
    )


def test_records_wait_while_the_server_is_away_and_go_in_order_when_it_answers(tmp_path: Path, caplog):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=store)
    run = client.create_run(client.create_experiment("offline"))
    pending = PendingRecords(client, run.info.run_id, tmp_path / "pending", retry_seconds=3600)
    sent = []

    with caplog.at_level(logging.WARNING):
        pending.deliver(_away, keep_metrics({"loss": 1.0}, 1000, 1))
    assert pending.offline and pending.count() == 1
    assert "does not answer" in caplog.text and str(tmp_path / "pending") in caplog.text
    pending.deliver(lambda: sent.append(2), keep_metrics({"loss": 2.0}, 2000, 2))  # not asked again yet
    assert sent == [] and pending.count() == 2

    pending.retry_seconds = 0  # time to ask again: the store answers, the kept records go first
    pending.deliver(lambda: sent.append(3), keep_metrics({"loss": 3.0}, 3000, 3))
    assert sent == [3] and not pending.offline and not pending.directory.exists()
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(p.step, p.value, p.timestamp) for p in history] == [(1, 1.0, 1000), (2, 2.0, 2000)]


def test_an_answer_of_the_server_is_not_taken_for_its_absence(tmp_path: Path):
    refused = MlflowException("bad metric name", error_code=INVALID_PARAMETER_VALUE)
    assert not is_unreachable(refused)
    assert is_unreachable(MlflowException("API request failed with exception ConnectionError"))
    assert is_unreachable(ConnectionRefusedError())
    pending = PendingRecords(MlflowClient(f"sqlite:///{tmp_path}/m.db"), "0" * 32, tmp_path / "pending")

    def refuse():
        raise refused

    with pytest.raises(MlflowException) as info:
        pending.deliver(refuse, keep_metrics({"x": 1.0}, 1, 0))
    assert info.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert pending.count() == 0 and not pending.offline


def test_a_half_written_last_record_of_a_killed_process_is_skipped(tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("killed"))
    pending = PendingRecords(client, run.info.run_id, tmp_path / "pending")
    pending.directory.mkdir()
    record = {"op": "metrics", "values": {"loss": 0.5}, "timestamp": 5, "step": 7}
    (pending.directory / "records.jsonl").write_text(json.dumps(record) + "\n" + '{"op": "metr')
    assert pending.flush()
    [point] = client.get_metric_history(run.info.run_id, "loss")
    assert (point.step, point.value) == (7, 0.5)
