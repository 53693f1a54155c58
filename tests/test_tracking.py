"""MLflow tracking: a local SQLite store, and a real `mlflow server` read back through its REST API."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.params import Params, load_params, parse_params
from pipeline.tracking import CONTINUES_TAG, RunInfo, experiment_name, reopen_run, start_run

ROOT = Path(__file__).resolve().parents[1]
LOCK = {
    "schema": "2.0",
    "stages": {
        "download": {"cmd": "python -m stages.download", "outs": [{"path": "data/raw", "md5": "aa.dir"}]},
        "prepare": {"cmd": "python -m stages.prepare", "deps": [{"path": "data/raw", "md5": "aa.dir"}]},
    },
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module: creating its tables takes MLflow several seconds."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed git checkout with a dvc.lock, as a stage sees it when `dvc exp run` runs it."""
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    (tmp_path / "train.py").write_text("print('training')\n")
    (tmp_path / ".gitignore").write_text("/models/\n/metrics/\n/reports/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "lock")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "gamma-ablation")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abc")
    return tmp_path


def _lock_md5(stage: str) -> str:
    return hashlib.md5(
        json.dumps(LOCK["stages"][stage], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def test_start_run_logs_flat_params_ticks_and_provenance(store: str, project: Path):
    params = load_params(ROOT / "params.yaml")
    with start_run(params, tracking_uri=store) as run:
        run.log_tick({"Loss/G/loss": 2.0, "Progress/augment": 0.0}, kimg=0.5)
        run.log_tick({"Loss/G/loss": 1.5, "Progress/augment": 0.01}, kimg=1.0)

    assert RunInfo.load(project / "models/mlflow_run.json") == run.info
    client = MlflowClient(tracking_uri=store)
    logged = client.get_run(run.info.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "gamma-ablation"
    assert client.get_experiment(run.info.experiment_id).name == "stylegan/demo-32px"
    assert logged.data.params["train.gamma"] == "0.05"
    assert logged.data.params["train.mirror"] == "true"
    assert logged.data.params["data.folder.path"] == "null"
    assert json.loads(logged.data.params["eval.metrics"]) == params.eval.metrics
    assert logged.data.params["model.arch"] == "stylegan2"
    history = client.get_metric_history(run.info.run_id, "Loss/G/loss")
    assert [(point.step, point.value) for point in history] == [(500, 2.0), (1000, 1.5)]
    tags = logged.data.tags
    assert tags["mlflow.source.git.commit"] == _git(project, "rev-parse", "HEAD")
    assert tags["git.dirty"] == "false"
    assert tags["dvc.exp_name"] == "gamma-ablation"
    assert tags["dvc.exp_baseline_rev"] == "0123abc"
    assert tags["dvc.lock.download"] == _lock_md5("download")
    assert tags["dvc.lock.prepare"] == _lock_md5("prepare")


def test_later_stages_log_into_the_train_run(store: str, project: Path):
    with start_run(Params(), tracking_uri=store) as run:
        run.log_image(np.full((8, 8, 3), 200, np.uint8), key="fakes", kimg=2.0)
    (project / "metrics").mkdir()
    metrics = {
        "fid50k_full": 41.5,
        "kid50k_full": None,
        "pr50k3_full": {"precision": 0.6, "recall": 0.25},
        "ppl2_wend": float("nan"),
        "device": "cpu",
        "converged": True,
    }
    (project / "metrics/eval.json").write_text(json.dumps(metrics))
    (project / "reports").mkdir()
    (project / "reports/index.html").write_text("<html></html>")
    (project / "models/G_ema.safetensors").write_bytes(b"weights")
    # The stages that ran since rewrote dvc.lock; that alone leaves the checkout clean.
    (project / "dvc.lock").write_text(yaml.safe_dump({**LOCK, "stages": {"download": {"cmd": "changed"}}}))

    with reopen_run() as reopened:
        assert reopened.log_eval_metrics() == {
            "fid50k_full": 41.5,
            "pr50k3_full.precision": 0.6,
            "pr50k3_full.recall": 0.25,
        }
        reopened.log_artifact("reports")
        reopened.log_artifact("models/G_ema.safetensors", "model")

    client = MlflowClient(tracking_uri=store)
    logged = client.get_run(run.info.run_id)
    assert reopened.info == run.info
    assert logged.info.status == "FINISHED"
    assert logged.data.metrics["fid50k_full"] == 41.5
    assert "kid50k_full" not in logged.data.metrics and "ppl2_wend" not in logged.data.metrics
    assert logged.data.tags["git.dirty"] == "false"
    assert logged.data.tags["dvc.lock.download"] != _lock_md5("download")
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"reports", "model", "images"} <= listed
    # A local store keeps artifacts next to its database, whatever the current directory.
    artifact_dir = (
        Path(store.removeprefix("sqlite:///")).parent / "mlartifacts/stylegan/demo-32px" / run.info.run_id
    )
    assert (artifact_dir / "artifacts/model/G_ema.safetensors").read_bytes() == b"weights"
    assert any(path.name.startswith("fakes") for path in (artifact_dir / "artifacts/images").iterdir())


def test_a_failing_stage_with_changed_code_marks_the_run_failed_and_dirty(store: str, project: Path):
    (project / "train.py").write_text("print('training, changed')\n")
    with pytest.raises(RuntimeError, match="out of memory"), start_run(Params(), tracking_uri=store) as run:
        raise RuntimeError("out of memory")
    logged = MlflowClient(tracking_uri=store).get_run(run.info.run_id)
    assert logged.info.status == "FAILED"
    assert logged.data.tags["git.dirty"] == "true"


def test_resuming_continues_the_run_with_the_same_params_only(
    store: str, project: Path, caplog: pytest.LogCaptureFixture
):
    with start_run(Params(), tracking_uri=store) as first:
        first.log_tick({"Loss/D/loss": 1.0}, kimg=4)
    with start_run(Params(), resume_run_id=first.info.run_id, tracking_uri=store) as resumed:
        resumed.log_tick({"Loss/D/loss": 0.5}, kimg=8)
    assert resumed.info == first.info
    history = MlflowClient(tracking_uri=store).get_metric_history(first.info.run_id, "Loss/D/loss")
    assert [point.step for point in history] == [4000, 8000]

    # Other params (an extended run, another experiment on the same checkpoints): a new run, tagged with the
    # one it continues; the first keeps its params.
    longer = Params(train={"kimg": 50000})
    with (
        caplog.at_level(logging.INFO),
        start_run(longer, resume_run_id=first.info.run_id, tracking_uri=store) as extended,
    ):
        pass
    client = MlflowClient(tracking_uri=store)
    assert extended.info.run_id != first.info.run_id
    assert client.get_run(extended.info.run_id).data.tags[CONTINUES_TAG] == first.info.run_id
    assert client.get_run(first.info.run_id).data.params["train.kimg"] == "25000.0"
    assert client.get_run(extended.info.run_id).data.params["train.kimg"] == "50000.0"
    assert "train.kimg (25000.0 -> 50000.0)" in caplog.text

    with (
        caplog.at_level(logging.WARNING),
        start_run(Params(), resume_run_id="0" * 32, tracking_uri=store) as fresh,
    ):
        pass
    assert fresh.info.run_id != "0" * 32
    assert f"MLflow run {'0' * 32} to resume is not in" in caplog.text


@pytest.mark.parametrize(
    ("data", "resolution", "expected"),
    [
        ({"source": "demo"}, 32, "stylegan/demo-32px"),
        ({"source": "ffhq", "ffhq": {"variant": "images1024"}}, 256, "stylegan/ffhq-images1024-256px"),
        ({"source": "ffhq"}, 128, "stylegan/ffhq-thumbnails128-128px"),
        ({"source": "flowers102"}, 128, "stylegan/flowers102-128px"),
        ({"source": "folder", "folder": {"path": "/data/faces/"}}, 256, "stylegan/folder-faces-256px"),
    ],
)
def test_one_experiment_per_dataset_and_resolution(data: dict, resolution: int, expected: str):
    assert experiment_name(parse_params({"data": data, "prepare": {"resolution": resolution}})) == expected


def test_tracking_uri_defaults_to_a_store_in_the_dvc_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.default_tracking_uri() == "http://mlflow.internal:5000"


def test_a_broken_run_file_is_named(tmp_path: Path):
    path = tmp_path / "mlflow_run.json"
    path.write_text(json.dumps({"run_id": "abc", "experiment_id": 3}))
    with pytest.raises(
        ValueError, match=f"{path}: missing or non-string key\\(s\\) experiment_id, tracking_uri"
    ):
        RunInfo.load(path)
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        RunInfo.load(tmp_path / "missing.json")


# --- against a real tracking server --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/m.db",
        "--default-artifact-root",
        str(tmp_path / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (tmp_path / "server.log").open("w")
    # Its own process group: the server's workers outlive a plain kill of the parent.
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _rest_get(url: str, endpoint: str, **query: str) -> dict:
    with urllib.request.urlopen(
        f"{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    ) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_a_run_logged_to_a_tracking_server_reads_back_over_rest(
    mlflow_server: str, project: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with start_run(Params(train={"gamma": 2.0})) as run:
        run.log_tick({"Loss/G/loss": 1.25}, kimg=3)
    (project / "metrics").mkdir()
    (project / "metrics/eval.json").write_text(json.dumps({"fid50k_full": 12.5}))
    with reopen_run() as reopened:
        reopened.log_eval_metrics()

    got = _rest_get(mlflow_server, "runs/get", run_id=run.info.run_id)["run"]
    params = {item["key"]: item["value"] for item in got["data"]["params"]}
    metrics = {item["key"]: (item["value"], item["step"]) for item in got["data"]["metrics"]}
    tags = {item["key"]: item["value"] for item in got["data"]["tags"]}
    assert params["train.gamma"] == "2.0"
    assert params["prepare.resolution"] == "32"
    assert metrics == {"Loss/G/loss": (1.25, 3000), "fid50k_full": (12.5, 0)}
    assert tags["mlflow.source.git.commit"] == _git(project, "rev-parse", "HEAD")
    assert tags["dvc.exp_name"] == "gamma-ablation"
    assert tags["dvc.lock.prepare"] == _lock_md5("prepare")
    assert got["info"]["status"] == "FINISHED"
    experiment = _rest_get(mlflow_server, "experiments/get", experiment_id=run.info.experiment_id)
    assert experiment["experiment"]["name"] == "stylegan/demo-32px"
    assert run.info.tracking_uri == mlflow_server
    assert (
        run.info.ui_url() == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    )
