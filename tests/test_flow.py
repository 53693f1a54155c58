"""The Prefect flow around the DVC pipeline, run for real on a small git + DVC repo (see conftest)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL
from ruamel.yaml import YAML

from pipeline.flow import (
    DvcCommandError,
    StageOutcome,
    format_override,
    iter_output_lines,
    pipeline_flow,
    set_param_argument,
)


def flow_test(test):
    """A test that runs flows: on Prefect's temporary server, and slow (DVC starts in 1-2 s per command)."""
    return pytest.mark.slow(pytest.mark.usefixtures("prefect_harness")(test))


OUTPUTS = ["data/a.txt", "b.txt", "metrics.json", "models/mlflow_run.json", "reports/index.html"]


def _runs(repo: Path) -> list[str]:
    path = repo / "runs.log"
    return path.read_text().split() if path.exists() else []


def flow_run_id(state):
    return state.state_details.flow_run_id


# Reads go straight to Prefect's REST API: this Prefect client sends `null` for the filters left out, which
# the server rejects (`prefect artifact ls` fails the same way).
def _api_filter(collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{PREFECT_API_URL.value()}/{collection}/filter", json=body)
    response.raise_for_status()
    return response.json()


def read_artifacts(run_id) -> dict[str, dict[str, Any]]:
    found = _api_filter("artifacts", {"artifacts": {"flow_run_id": {"any_": [str(run_id)]}}})
    return {artifact["key"]: artifact for artifact in found}


def _log_lines(run_id) -> list[str]:
    asyncio.run(APILogHandler.aflush())  # logs reach the API in batches
    found = _api_filter("logs", {"logs": {"flow_run_id": {"any_": [str(run_id)]}}, "limit": 200})
    return [log["message"] for log in found]


def exp_show(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` as experiment name -> data (params, metrics)."""
    output = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shown = json.loads(output)
    return {
        rev["name"]: rev["data"] for base in shown for exp in base["experiments"] or [] for rev in exp["revs"]
    }


@flow_test
def test_runs_stages_in_dag_order_then_finds_them_up_to_date(dvc_repo: Path):
    state = pipeline_flow(repo_dir=str(dvc_repo), return_state=True)
    summary = state.result()

    assert [(run.stage, run.outcome) for run in summary.stages] == [
        ("a", StageOutcome.RAN),
        ("b", StageOutcome.RAN),
        ("c", StageOutcome.RAN),
    ]
    assert _runs(dvc_repo) == ["a", "b", "c"]
    assert (dvc_repo / "b.txt").read_text() == "6"
    assert json.loads((dvc_repo / "metrics.json").read_text())["result"] == 6
    # The stage's own output reached the Prefect logs, line by line.
    assert "a: wrote 3 note 'plain'" in _log_lines(flow_run_id(state))
    artifacts = read_artifacts(flow_run_id(state))
    assert "(http://mlflow.example:5000/#/experiments/7/runs/r1)" in artifacts["mlflow-run"]["data"]
    assert f"({(dvc_repo / 'reports/index.html').as_uri()})" in artifacts["pipeline-report"]["data"]
    assert [row["stage"] for row in json.loads(artifacts["pipeline-stages"]["data"])] == ["a", "b", "c"]

    mtimes = {path: (dvc_repo / path).stat().st_mtime_ns for path in OUTPUTS}
    again = pipeline_flow(repo_dir=str(dvc_repo))

    assert [(run.stage, run.outcome) for run in again.stages] == [
        ("a", StageOutcome.UP_TO_DATE),
        ("b", StageOutcome.UP_TO_DATE),
        ("c", StageOutcome.UP_TO_DATE),
    ]
    assert _runs(dvc_repo) == ["a", "b", "c"]
    assert {path: (dvc_repo / path).stat().st_mtime_ns for path in OUTPUTS} == mtimes


@flow_test
def test_targets_run_only_their_upstream(dvc_repo: Path):
    summary = pipeline_flow(repo_dir=str(dvc_repo), targets=["b"])

    assert [run.stage for run in summary.stages] == ["a", "b"]
    assert _runs(dvc_repo) == ["a", "b"]
    assert not (dvc_repo / "metrics.json").exists()


@flow_test
def test_overrides_run_as_a_dvc_experiment_and_leave_the_workspace_alone(dvc_repo: Path):
    params_before = (dvc_repo / "params.yaml").read_text()
    state = pipeline_flow(
        repo_dir=str(dvc_repo),
        overrides={"b.factor": 5, "a.note": "2"},
        exp_name="factor-five",
        return_state=True,
    )
    summary = state.result()

    assert summary.experiment == "factor-five"
    assert [(run.stage, run.outcome) for run in summary.stages] == [
        ("a", StageOutcome.RAN),
        ("b", StageOutcome.RAN),
        ("c", StageOutcome.RAN),
    ]
    experiment = exp_show(dvc_repo)["factor-five"]
    params = experiment["params"]["params.yaml"]["data"]
    assert params["b"]["factor"] == 5
    assert params["a"]["note"] == "2"  # a string that looks like a number stays a string
    assert experiment["metrics"]["metrics.json"]["data"]["result"] == 15
    # --temp: the workspace keeps its params and has no outputs of the experiment.
    assert (dvc_repo / "params.yaml").read_text() == params_before
    assert not (dvc_repo / "b.txt").exists()
    # The MLflow run file is read from the experiment's outputs.
    artifacts = read_artifacts(flow_run_id(state))
    assert "(http://mlflow.example:5000/#/experiments/7/runs/r1)" in artifacts["mlflow-run"]["data"]
    assert "dvc exp apply factor-five" in artifacts["pipeline-report"]["data"]


@flow_test
def test_a_failing_stage_fails_the_flow_with_its_output(dvc_repo: Path):
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["b"]["factor"] = "x"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params))

    state = pipeline_flow(repo_dir=str(dvc_repo), return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DvcCommandError)
    assert "repro --single-item b" in str(error)
    assert "invalid literal for int() with base 10: 'x'" in str(error)
    assert _runs(dvc_repo) == ["a", "b"]  # c never started
    assert any("invalid literal for int()" in line for line in _log_lines(flow_run_id(state)))


@flow_test
def test_retries_a_stage_that_failed_for_outside_reasons(dvc_repo: Path):
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["a"]["flaky_failures"] = 1
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params))

    summary = pipeline_flow(repo_dir=str(dvc_repo), targets=["a"], retries={"a": 1}, retry_delay_seconds=0)

    assert [(run.stage, run.outcome) for run in summary.stages] == [("a", StageOutcome.RAN)]
    assert _runs(dvc_repo) == ["a", "a"]
    assert (dvc_repo / "data/a.txt").read_text() == "3"


@pytest.mark.parametrize(
    "value",
    [5, 0.05, 1e-6, True, None, "ada", "2", "true", "a b", 'say "hi"', "back\\slash\\", [1, "2", 0.5]],
)
def test_overrides_reach_dvc_with_their_type(tmp_path: Path, value):
    # DVC's own reader of `-S` arguments is the reference, and its YAML 1.2 reader (PyYAML, YAML 1.1,
    # reads the `1e-06` DVC writes as a string).
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  gamma: 1\n")
    apply_overrides(str(params), [format_override("train.gamma", value)])
    written = YAML(typ="safe").load(params.read_text())["train"]["gamma"]
    assert (written, type(written)) == (value, type(value))


def test_an_override_may_set_a_key_the_params_file_leaves_to_its_default(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  gamma: 1\n")
    overrides = [set_param_argument("train.gamma", 2), set_param_argument("train.sample_seeds", [0, 1])]
    apply_overrides(str(params), overrides)
    assert YAML(typ="safe").load(params.read_text()) == {"train": {"gamma": 2, "sample_seeds": [0, 1]}}
    assert set_param_argument("other.yaml:train.gamma", 2) == "other.yaml:++train.gamma=2"


def test_output_is_forwarded_by_line_with_progress_redraws_thinned():
    child = (
        "import sys, time\n"
        "w = sys.stdout.write\n"
        "w('start\\r\\n'); sys.stdout.flush(); time.sleep(0.2)\n"
        "for i in range(50): w(f'\\rprogress {i}'); sys.stdout.flush()\n"
        "w('\\rprogress done\\n'); w('tail without newline')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    lines = list(iter_output_lines(process.stdout, progress_interval=3600))
    process.wait()

    assert lines == ["start", "progress 0", "progress done", "tail without newline"]
