"""`kill -9` of `dvc repro` (its whole process group) while evaluate computes and writes its metrics (and
its feature cache, outside the DVC outputs); `dvc repro` again finishes with the metrics of an uninterrupted
run, accepts no half-written cache file, and leaves no MLflow run RUNNING."""

from __future__ import annotations

import json
import random
import time

import pytest
from mlflow import MlflowClient

from tests.crash_helpers import Project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash-evaluate")
    base = Project(root / "base")
    base.repro("w_avg")
    straight = base.copy(root / "straight")
    straight.repro("evaluate")

    killed = base.copy(root / "killed")
    rng = random.Random(14)
    landed = []
    for _ in range(2):  # a first kill early in the stage, a second one later
        repro = killed.start_repro("evaluate")
        repro.wait_for(lambda r=repro: "Running stage 'evaluate'" in r.output())
        time.sleep(rng.uniform(2.0, 8.0))
        landed.append(repro.running())
        repro.kill()
    output = killed.start_repro("evaluate").finish()
    return straight, killed, landed, output


def test_the_kills_landed_while_evaluate_ran(runs):
    _, _, landed, _ = runs
    assert all(landed), "evaluate had finished before a kill"


def test_the_metrics_are_those_of_an_uninterrupted_run(runs):
    straight, killed, _, output = runs
    assert "Running stage 'evaluate'" in output
    metrics = json.loads((killed.path / "metrics/eval.json").read_text())
    assert metrics == json.loads((straight.path / "metrics/eval.json").read_text())
    assert set(metrics) == {"fid32_full", "kid32_full"}  # fid50k_full and kid50k_full of 32 images
    assert not list((killed.path / ".cache").rglob("*.tmp"))
    client = MlflowClient(killed.env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert "RUNNING" not in {run.info.status for run in client.search_runs(experiments)}
