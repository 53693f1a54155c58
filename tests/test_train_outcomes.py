"""What the train stage reports, through `python -m stages.train` in a workspace of its own: divergence
exits non-zero with the kimg and the phase, marks the MLflow run FAILED, fails the Prefect flow run with
that message and keeps the last good checkpoint;
a resumed run writes complete records; a run continuing another's checkpoints with other params gets a new
MLflow run with the whole history; a run killed with SIGKILL is marked KILLED when the next one starts."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.flow import pipeline_flow
from pipeline.shards import prepare_shards
from pipeline.tracking import CONTINUES_TAG, OWNER_TAG
from stylegan.training import CheckpointManager
from stylegan.training.checkpoint import atomic_save, content_digest, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    generate_demo(raw, count=24, resolution=16, workers=1)
    prepare_shards(raw, read_manifest(raw), tmp_path / "data/shards", resolution=16, workers=1)
    return tmp_path


def write_params(workspace: Path, **train) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(z_dim=16, w_dim=16, channel_base=64, channel_max=16)
    params["train"].update(kimg=0.016, batch=8, tick_kimg=0.008, snapshot_kimg=0.008, workers=0)
    params["train"].update(sample_seeds=[0, 1], **train)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))


def env_of(workspace: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{workspace}/mlflow.db"}
    env.update(OMP_NUM_THREADS="1")
    env.pop("DVC_ROOT", None)
    return env


def train_stage(workspace: Path, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=workspace, env=env_of(workspace),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == expect, result.stderr[-4000:]
    return result


def client_of(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace}/mlflow.db")


def run_id(workspace: Path) -> str:
    return json.loads((workspace / "models/mlflow_run.json").read_text())["run_id"]


def checkpoints(workspace: Path) -> CheckpointManager:
    [folder] = (workspace / ".cache/checkpoints").glob("*/*/")  # <run key>/<owner>
    return CheckpointManager(folder / "checkpoints")


@pytest.mark.usefixtures("prefect_harness")
def test_divergence_exits_with_kimg_and_phase_fails_the_mlflow_and_flow_runs_and_keeps_the_good_checkpoint(
    workspace, monkeypatch
):
    write_params(workspace, kimg=0.008)
    train_stage(workspace)
    manager = checkpoints(workspace)
    [good] = manager.paths()
    # The next ticks blow up: the checkpoint's weights are fine, its optimizers' learning rates are not.
    state = load_checkpoint(good)
    for optimizer in ("opt_G", "opt_D"):
        for group in state[optimizer]["param_groups"]:
            group["lr"] = 1e10
    atomic_save({**state, "sha256": content_digest(state)}, good)
    good_bytes = good.read_bytes()

    write_params(workspace, kimg=0.024)
    result = train_stage(workspace, expect=1)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train: training diverged between kimg 0.008 and 0.016: non-finite "), last
    assert " in phase " in last and "The last good checkpoint in " in last
    run = client_of(workspace).get_run(run_id(workspace))
    assert run.info.status == "FAILED"
    assert manager.paths() == [good] and good.read_bytes() == good_bytes  # nothing written after it

    # The same through the Prefect flow, in a DVC repo whose pipeline is this train stage: the flow run
    # fails with the stage's message.
    (workspace / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python -m stages.train\n")
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=workspace, check=True, capture_output=True)
    for key, value in env_of(workspace).items():
        monkeypatch.setenv(key, value)
    state = pipeline_flow(repo_dir=str(workspace), return_state=True)
    assert state.is_failed()
    assert "train: training diverged between kimg 0.008 and 0.016: non-finite " in str(
        state.result(raise_on_failure=False)
    )
    assert manager.paths() == [good] and good.read_bytes() == good_bytes


def test_resumed_runs_keep_complete_records_and_other_params_get_their_own_mlflow_run(workspace):
    write_params(workspace)
    train_stage(workspace)
    first = {name: (workspace / name).read_text() for name in ("metrics/train.json", "plots/train.tsv")}
    assert {"loss_G", "loss_D", "augment_p"} <= set(json.loads(first["metrics/train.json"]))
    first_run = run_id(workspace)

    # DVC clears a stage's outputs before running it again: the finished run, resumed, has nothing to do,
    # and writes the same records, into the same MLflow run.
    for name in ("models", "metrics", "plots"):
        for path in sorted((workspace / name).iterdir()):
            path.unlink()
    result = train_stage(workspace)
    assert "nothing to do" in result.stderr
    assert {name: (workspace / name).read_text() for name in first} == first
    assert run_id(workspace) == first_run

    # Extended (another kimg, so other params): a new MLflow run continues the checkpoints, from the start.
    write_params(workspace, kimg=0.024)
    train_stage(workspace)
    client = client_of(workspace)
    extended, original = client.get_run(run_id(workspace)), client.get_run(first_run)
    assert extended.info.run_id != first_run and extended.data.tags[CONTINUES_TAG] == first_run
    assert original.data.params["train.kimg"] == "0.016" and extended.data.params["train.kimg"] == "0.024"
    assert original.info.status == extended.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(extended.info.run_id, "loss_G")]
    assert sorted(set(steps)) == [8, 16, 24]
    final = json.loads((workspace / "metrics/train.json").read_text())
    assert final["kimg"] == 0.024 and {"loss_G", "loss_D", "augment_p"} <= set(final)
    with (workspace / "plots/train.tsv").open(newline="") as f:
        assert [row["kimg"] for row in csv.DictReader(f, delimiter="\t")] == ["0.008", "0.016", "0.024"]


def test_a_run_killed_mid_way_is_marked_killed_when_the_next_run_starts(workspace):
    write_params(workspace, kimg=100)
    log = workspace / "killed.log"
    with log.open("w") as stderr:
        killed = subprocess.Popen(
            [sys.executable, "-m", "stages.train"], cwd=workspace, env=env_of(workspace),
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while not list((workspace / ".cache/checkpoints").glob("*/*/checkpoints/checkpoint-*.pt")):
            assert killed.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.1)
        os.killpg(killed.pid, signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
    client = client_of(workspace)
    abandoned = run_id(workspace)
    assert client.get_run(abandoned).info.status == "RUNNING"  # nothing was left to end it
    assert client.get_run(abandoned).data.tags[OWNER_TAG].split()[1] == str(killed.pid)

    write_params(workspace, kimg=0.008, seed=1)  # another training: another MLflow run
    train_stage(workspace)
    assert run_id(workspace) != abandoned
    assert client.get_run(abandoned).info.status == "KILLED"
    assert client.get_run(run_id(workspace)).info.status == "FINISHED"
