"""The schedule, deployed for real (issue 14): `prefect.yaml` deployed with `prefect deploy --all` to a
temporary Prefect server, a process worker polling the work pool, and `stylegan-pipeline/nightly` triggered
with `prefect deployment run`, as the README says. The pipeline runs as a DVC experiment with tiny overrides
and every stage runs; a failing stage fails the flow run with the stage's message and is not retried; the
download, which may fail for outside reasons, is."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect.settings import PREFECT_API_URL

from pipeline.flow import StageOutcome
from tests.test_dag import copy_project, tiny_params
from tests.test_flow import exp_show

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml",
                 "params.yaml", "prefect.yaml")  # fmt: skip
PREFECT = [sys.executable, "-m", "prefect"]
STAGES = ["check", "download", "align", "prepare", "train", "w_avg", "evaluate", "report"]
DONE = {outcome.value for outcome in StageOutcome}  # ran, up to date, restored from run cache

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def tiny_overrides() -> dict[str, Any]:
    """What turns the embedded default into the DAG tests' tiny run, as `overrides` of the flow."""
    default = _flat(yaml.safe_load((ROOT / "params.yaml").read_text()))
    tiny = tiny_params()
    tiny["eval"]["metrics"] = ["fid50k_full"]
    return {key: value for key, value in _flat(tiny).items() if default.get(key, object()) != value}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def api(path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{PREFECT_API_URL.value()}/{path}"
    response = httpx.post(url, json=body) if body is not None else httpx.get(url)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A committed checkout, its deployments on the test server's work pool, and a worker polling it."""
    repo = tmp_path_factory.mktemp("deployed") / "stylegan"
    repo.mkdir()
    copy_project(repo, PROJECT_FILES)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_WORK_POOL": f"gpu-{uuid.uuid4().hex[:8]}",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PWD": str(repo),  # what a shell in the checkout sets: prefect.yaml's `{{ $PWD }}`
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
    }
    for variable in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(variable, None)
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "test@example.invalid"],
                    ["git", "config", "user.name", "test"], [sys.executable, "-m", "dvc", "init", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline"]):  # fmt: skip
        run(command, repo, env)
    # The README's commands, in the checkout.
    run([*PREFECT, "work-pool", "create", env["PREFECT_WORK_POOL"], "--type", "process"], repo, env)
    deployed = run([*PREFECT, "--no-prompt", "deploy", "--all"], repo, env)
    assert "stylegan-pipeline/nightly" in deployed
    log = (repo.parent / "worker.log").open("w")
    command = [*PREFECT, "worker", "start", "--pool", env["PREFECT_WORK_POOL"]]
    worker = subprocess.Popen(command, cwd=repo.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        yield repo, env
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def trigger(repo: Path, env: dict[str, str], name: str, **parameters: Any) -> dict[str, Any]:
    """`prefect deployment run stylegan-pipeline/nightly -p ...`, then wait for the flow run to end."""
    params = [arg for key, value in parameters.items() for arg in ("-p", f"{key}={json.dumps(value)}")]
    command = [*PREFECT, "deployment", "run", "stylegan-pipeline/nightly", "--flow-run-name", name, *params]
    output = run(command, repo, env)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output)[1]
    deadline = time.monotonic() + 900
    while True:
        flow_run = api(f"flow_runs/{flow_run_id}")
        if flow_run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return flow_run
        assert time.monotonic() < deadline, f"flow run {name} still {flow_run['state']['type']}"
        time.sleep(2)


def task_runs(flow_run: dict[str, Any]) -> list[dict[str, Any]]:
    return api("task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})


def test_the_deployed_nightly_flow_runs_every_stage_on_a_worker(deployed):
    repo, env = deployed
    flow_run = trigger(repo, env, "tiny-nightly", overrides=tiny_overrides())

    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]["message"]
    [artifact] = api("artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]},
                                                        "key": {"any_": ["pipeline-stages"]}}})  # fmt: skip
    rows = json.loads(artifact["data"])
    assert [row["stage"] for row in rows] == STAGES
    assert {row["outcome"] for row in rows} <= DONE
    # The experiment, named after the flow run, holds the tiny params and the metrics.
    experiment = exp_show(repo)["tiny-nightly"]
    params = experiment["params"]["params.yaml"]["data"]
    assert params["train"]["kimg"] == 0.064 and params["train"]["sample_seeds"] == [0, 1, 2, 3]
    metrics = experiment["metrics"]["metrics/eval.json"]["data"]
    assert [name for name, value in metrics.items() if name.startswith("fid") and value > 0], metrics
    # --temp: the checkout the worker runs in keeps its params and has no outputs.
    assert (repo / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()
    assert not (repo / "models/G_ema.safetensors").exists()


def test_a_failing_stage_fails_the_flow_run_with_its_message_once(deployed):
    repo, env = deployed
    flow_run = trigger(repo, env, "bad-gamma", overrides={**tiny_overrides(), "train.gamma": -1},
                       retries={"download": 2}, retry_delay_seconds=0)  # fmt: skip

    assert flow_run["state"]["type"] == "FAILED"
    message = flow_run["state"]["message"]
    assert "exited with 2" in message and "train.gamma" in message, message
    [task] = task_runs(flow_run)
    assert task["run_count"] == 1  # the check stage failed: retrying cannot help


def test_a_failing_download_is_retried(deployed, tmp_path: Path):
    repo, env = deployed
    missing = tmp_path / "photos-not-mounted"
    overrides = {**tiny_overrides(), "data.source": "folder", "data.folder.path": str(missing)}
    flow_run = trigger(repo, env, "no-photos", overrides=overrides, retries={"download": 1},
                       retry_delay_seconds=0)  # fmt: skip

    assert flow_run["state"]["type"] == "FAILED"
    assert str(missing) in flow_run["state"]["message"]
    [task] = task_runs(flow_run)
    assert task["run_count"] == 2
