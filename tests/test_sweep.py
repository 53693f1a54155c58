"""The sweep flow: a grid of params overrides run as DVC experiments, results in a table artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.sweep import SweepError, expand_grid, sweep_flow
from tests.test_flow import exp_show, flow_run_id, flow_test, read_artifacts


@flow_test
def test_sweep_runs_each_point_as_an_experiment_and_tables_the_results(dvc_repo: Path):
    # Two experiments at a time; the third point makes stage b fail.
    state = sweep_flow(
        grid={"b.factor": [2, 5, "x"]},
        repo_dir=str(dvc_repo),
        name="gamma",
        max_parallel=2,
        return_state=True,
    )

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, SweepError)
    assert "1 of 3 experiments failed: gamma-3" in str(error)
    shown = exp_show(dvc_repo)
    assert shown["gamma-1"]["metrics"]["metrics.json"]["data"]["result"] == 6
    assert shown["gamma-2"]["metrics"]["metrics.json"]["data"]["result"] == 15
    assert "gamma-3" not in shown

    rows = json.loads(read_artifacts(flow_run_id(state))["sweep-results"]["data"])
    done = [
        {key: row[key] for key in ("experiment", "status", "b.factor", "result", "half.value")}
        for row in rows[:2]
    ]
    assert done == [
        {"experiment": "gamma-1", "status": "done", "b.factor": 2, "result": 6, "half.value": 3.0},
        {"experiment": "gamma-2", "status": "done", "b.factor": 5, "result": 15, "half.value": 7.5},
    ]
    failed = rows[2]
    assert (failed["experiment"], failed["status"], failed["b.factor"], failed["result"]) == (
        "gamma-3",
        "failed",
        "x",
        None,
    )
    assert "failed to reproduce 'b'" in failed["error"]


def test_grid_expands_to_every_combination_last_key_fastest():
    assert expand_grid({"train.gamma": [1, 2], "train.aug": ["ada", "noaug"]}) == [
        {"train.gamma": 1, "train.aug": "ada"},
        {"train.gamma": 1, "train.aug": "noaug"},
        {"train.gamma": 2, "train.aug": "ada"},
        {"train.gamma": 2, "train.aug": "noaug"},
    ]


@pytest.mark.parametrize("values", [[], "ada", 2])
def test_grid_rejects_a_key_without_a_list_of_values(values):
    with pytest.raises(ValueError, match="grid train.aug: expected a non-empty list"):
        expand_grid({"train.gamma": [1], "train.aug": values})
