"""Two sweeps at once in one workspace (issue 14): every DVC experiment trains in a checkpoint folder of
its own, starting from a copy of the most advanced checkpoint another one has of the same config (so that
longer runs extend shorter ones); a folder is trained in by one process at a time (the same experiment
started twice waits for itself); every DVC experiment logs into MLflow runs of its own, also when its
train stage was another experiment's (up to date, or restored from DVC's run cache)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc.api import DVCFileSystem
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL

from pipeline.locks import exclusive_folder
from pipeline.params import Params
from pipeline.tracking import CONTINUES_TAG, GENERATOR_RUN_TAG, reopen_run, start_run
from tests.test_dag import copy_project, tiny_params
from tests.test_flow import exp_show
from tests.test_tracking_server import TrackingServer

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import os, sys, time
os.environ["DVC_EXP_NAME"] = "left-1"
from pipeline.locks import exclusive_folder
with exclusive_folder(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(folder: Path, seconds: float) -> subprocess.Popen:
    command = [sys.executable, "-c", HOLDER, str(folder), str(seconds)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_training_of_a_checkpoint_folder_waits_for_the_first_and_says_for_whom(tmp_path, caplog):
    folder = tmp_path / "checkpoints/0123456789abcdef"
    holder = _hold(folder, 3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), exclusive_folder(folder):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 1.5  # the holder kept it 3 s after saying so
    assert f"{folder} is in use by DVC experiment left-1 (pid {holder.pid} on " in caplog.text


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "checkpoints/0123456789abcdef"
    holder = _hold(folder, 600)
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with exclusive_folder(folder):
        assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


@pytest.mark.slow
def test_experiments_never_log_into_each_others_runs(store: str, workdir: Path, monkeypatch):
    client = MlflowClient(tracking_uri=store)
    monkeypatch.setenv("DVC_EXP_NAME", "left-1")
    with start_run(Params(), tracking_uri=store) as left:
        pass
    # Another experiment resumes left's checkpoints (same params): a run of its own, tagged with left's.
    monkeypatch.setenv("DVC_EXP_NAME", "right-1")
    with start_run(Params(), tracking_uri=store, resume_run_id=left.info.run_id) as right:
        pass
    assert right.info.run_id != left.info.run_id
    assert client.get_run(right.info.run_id).data.tags[CONTINUES_TAG] == left.info.run_id

    # Evaluate and report of an experiment whose train stage was left's (up to date, restored from the run
    # cache) log into one run of that experiment, found again by the second stage that asks.
    with reopen_run(left.info) as evaluated:
        evaluated.log_metrics({"fid50k_full": 20.0})
    with reopen_run(left.info) as reported:
        pass
    assert evaluated.info.run_id == reported.info.run_id
    assert evaluated.info.run_id not in {left.info.run_id, right.info.run_id}
    own = client.get_run(evaluated.info.run_id)
    assert own.data.tags[GENERATOR_RUN_TAG] == left.info.run_id
    assert own.data.tags["dvc.exp_name"] == "right-1" and own.info.run_name == "right-1"
    assert own.data.params["train.kimg"] == "25000.0"  # params.yaml is absent here: the trained run's
    # The experiment that trained the generator, and the workspace, each keep to their own.
    monkeypatch.setenv("DVC_EXP_NAME", "left-1")
    with reopen_run(left.info) as again:
        pass
    assert again.info == left.info
    monkeypatch.delenv("DVC_EXP_NAME")
    with reopen_run(left.info) as workspace:
        pass
    assert workspace.info.run_id not in {left.info.run_id, evaluated.info.run_id}
    assert "fid50k_full" not in client.get_run(left.info.run_id).data.metrics


# --- two sweeps at once, for real ------------------------------------------------------------------------

PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_two_sweeps_at_once_train_in_folders_of_their_own_and_keep_their_runs_apart(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo, PROJECT_FILES)
    params = tiny_params()
    params["eval"]["metrics"] = ["kid50k_full"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    server = TrackingServer(tmp_path)  # several writers at once: a tracking server, as the sweep docs say
    server.start()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": server.url,
           "PREFECT_API_URL": PREFECT_API_URL.value()}  # fmt: skip
    for variable in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(variable, None)
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.invalid"],
                    ["git", "config", "user.name", "t"], [sys.executable, "-m", "dvc", "init", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline"]):  # fmt: skip
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)

    # Two users sweep evaluation settings of the same new training config, at the same time.
    sweeps = {}
    try:
        for name, num_gen in (("left", 16), ("right", 24)):
            command = [sys.executable, "-m", "pipeline.sweep", "--grid", f"eval.num_gen=[{num_gen}]",
                       "--set", "train.gamma=0.1", "--stages", "evaluate", "--name", name,
                       "--repo-dir", str(repo)]  # fmt: skip
            log = (tmp_path / f"{name}.log").open("w")
            sweeps[name] = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
        for name, sweep in sweeps.items():
            assert sweep.wait(timeout=1200) == 0, (tmp_path / f"{name}.log").read_text()[-5000:]
        client = MlflowClient(tracking_uri=server.url)
        found = client.get_experiment_by_name("stylegan/demo-16px").experiment_id
        runs = {
            name: client.search_runs([found], f"tags.`dvc.exp_name` = '{name}'")
            for name in ("left-1", "right-1")
        }
    finally:
        for sweep in sweeps.values():
            if sweep.poll() is None:
                sweep.kill()
        server.stop()

    shown = exp_show(repo)
    generators = {
        experiment: DVCFileSystem(str(repo), rev=experiment).read_bytes("models/G_ema.safetensors")
        for experiment in ("left-1", "right-1")
    }
    # One config, a folder for each experiment: the same generator, trained where nobody else wrote.
    [config] = (repo / ".cache/checkpoints").iterdir()
    assert sorted(folder.name for folder in config.iterdir()) == ["exp-left-1", "exp-right-1"]
    assert generators["left-1"] == generators["right-1"]
    # Each experiment's evaluation is in a run of its own, with its own numbers.
    assert [len(found) for found in runs.values()] == [1, 1], runs
    [left], [right] = runs.values()
    assert left.info.run_id != right.info.run_id
    for experiment, run in (("left-1", left), ("right-1", right)):
        metrics = shown[experiment]["metrics"]["metrics/eval.json"]["data"]
        assert metrics and all(run.data.metrics[key] == value for key, value in metrics.items()), experiment
