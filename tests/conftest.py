"""Shared fixtures: settings that keep tests offline and quiet, Prefect's test server, a small DVC repo."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Before anything imports Prefect, MLflow or DVC: no telemetry (the machines running tests are offline),
# and time for Prefect's temporary server to start on a busy CI machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

# `make test` runs two pytest-xdist workers on two cores: one thread each, for them and every process they
# start (torch and oneDNN read the variable when they load). Two threads each would oversubscribe the cores,
# and OpenMP's waiting threads then slow the tiny networks of the tests down several times over.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Every test behaves the same online and offline: a request to any host but this machine goes to a closed
# local port and fails at once (urllib, requests and httpx read these variables, in this process and in
# every command a test starts), so no test downloads detector weights (vgg16.pt is 528 MB) or anything
# else just because a network happens to be there. Local servers (MLflow, Prefect, fake mirrors) answer.
for _variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
    os.environ[_variable] = "http://127.0.0.1:9"
for _variable in ("no_proxy", "NO_PROXY"):
    os.environ[_variable] = "127.0.0.1,localhost,::1"
os.environ.pop("ALL_PROXY", None)
os.environ.pop("all_proxy", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first: `make test` hands whole files to the workers in this order
    (``--dist loadfile --no-loadscope-reorder``), and a long file started last would leave a core idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session", autouse=True)
def machine_caches_left_alone(tmp_path_factory):
    """Detector weights and feature caches in a folder of the session: a machine that has vgg16.pt in its
    own cache runs the same tests as one that has not (STYLEGAN_CACHE_DIR, read by stylegan.metrics)."""
    previous = os.environ.get("STYLEGAN_CACHE_DIR")
    os.environ["STYLEGAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("stylegan-cache"))
    yield
    if previous is None:
        os.environ.pop("STYLEGAN_CACHE_DIR", None)
    else:
        os.environ["STYLEGAN_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for the session; flows and artifacts go there."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


# A three-stage pipeline, declared out of order (c, b, a) so that running it in order proves the DAG was
# computed: a writes data/a.txt from a param, b multiplies it, c summarises it into metrics, a report and
# an MLflow run file. Every run of a stage appends its name to runs.log, outside the outputs.
_STAGE_SCRIPTS = {
    "a.py": """
        import os, pathlib, sys, yaml
        params = yaml.safe_load(open("params.yaml"))["a"]
        runs = pathlib.Path(os.environ["DVC_ROOT"], "runs.log")
        attempts = runs.read_text().split().count("a") if runs.exists() else 0
        with runs.open("a") as log:
            log.write("a\\n")
        if attempts < params["flaky_failures"]:
            sys.exit(f"a: simulated outage on attempt {attempts + 1}")
        pathlib.Path("data").mkdir(exist_ok=True)
        pathlib.Path("data/a.txt").write_text(str(params["value"]))
        print("a: wrote", params["value"], "note", repr(params["note"]))
    """,
    "b.py": """
        import os, pathlib, yaml
        factor = yaml.safe_load(open("params.yaml"))["b"]["factor"]
        with open(os.path.join(os.environ["DVC_ROOT"], "runs.log"), "a") as log:
            log.write("b\\n")
        value = int(pathlib.Path("data/a.txt").read_text()) * int(factor)
        pathlib.Path("b.txt").write_text(str(value))
    """,
    "c.py": """
        import json, os, pathlib
        with open(os.path.join(os.environ["DVC_ROOT"], "runs.log"), "a") as log:
            log.write("c\\n")
        value = int(pathlib.Path("b.txt").read_text())
        pathlib.Path("metrics.json").write_text(json.dumps({"result": value, "half": {"value": value / 2}}))
        pathlib.Path("models").mkdir(exist_ok=True)
        run = {"run_id": "r1", "experiment_id": "7", "tracking_uri": "http://mlflow.example:5000"}
        pathlib.Path("models/mlflow_run.json").write_text(json.dumps(run))
        pathlib.Path("reports").mkdir(exist_ok=True)
        pathlib.Path("reports/index.html").write_text(f"<p>{value}</p>")
    """,
}
_PARAMS = """
    a:
      value: 3
      note: plain
      flaky_failures: 0
    b:
      factor: 2
"""


def _dvc_yaml() -> str:
    python = shlex.quote(sys.executable)
    return f"""
        stages:
          c:
            cmd: {python} c.py
            deps: [c.py, b.txt]
            outs: [models/mlflow_run.json, reports]
            metrics:
              - metrics.json:
                  cache: false
          b:
            cmd: {python} b.py
            deps: [b.py, data/a.txt]
            params: [b]
            outs: [b.txt]
          a:
            cmd: {python} a.py
            deps: [a.py]
            params: [a]
            outs: [data]
    """


def run_checked(*command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git + DVC repo holding the three-stage pipeline above, committed, nothing run yet."""
    repo = tmp_path / "repo"
    repo.mkdir()
    files = {**_STAGE_SCRIPTS, "params.yaml": _PARAMS, "dvc.yaml": _dvc_yaml(), ".gitignore": "runs.log\n"}
    for name, text in files.items():
        (repo / name).write_text(textwrap.dedent(text).lstrip())
    run_checked("git", "init", "-q", cwd=repo)
    run_checked("git", "config", "user.name", "Pipeline Tests", cwd=repo)
    run_checked("git", "config", "user.email", "tests@example.invalid", cwd=repo)
    run_checked(sys.executable, "-m", "dvc", "init", "-q", cwd=repo)
    run_checked("git", "add", "-A", cwd=repo)
    run_checked("git", "commit", "-q", "-m", "pipeline", cwd=repo)
    return repo
