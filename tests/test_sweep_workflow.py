"""`python -m pipeline.sweep` and `python -m pipeline.flow` as a user runs them (issue 16): fixed `--set`
overrides beside `--grid`, a scalar grid value refused before anything runs, a readable results table,
SIGTERM stopping the `dvc exp run` children, and no telemetry noise. Each runs the command in a child
process, against the session's Prefect test server (or its own temporary one, as a user's does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from pipeline.sweep import format_table
from tests.test_flow import exp_show, flow_test

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("DVC_ROOT", None)
    return env


def _run(command: list[str], repo: Path, env: dict[str, str], timeout: float = 600):
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


@flow_test
def test_a_sweep_with_fixed_overrides_prints_a_table_of_swept_keys_and_metrics(dvc_repo: Path):
    command = [sys.executable, "-m", "pipeline.sweep", "--grid", "b.factor=[2, 3]", "--set", "a.value=5",
               "--name", "fixed", "--repo-dir", str(dvc_repo)]  # fmt: skip
    result = _run(command, dvc_repo, _env(PREFECT_API_URL=PREFECT_API_URL.value()))

    assert result.returncode == 0, result.stdout + result.stderr
    shown = exp_show(dvc_repo)
    for name, factor in (("fixed-1", 2), ("fixed-2", 3)):
        params = shown[name]["params"]["params.yaml"]["data"]
        assert (params["a"]["value"], params["b"]["factor"]) == (5, factor)
        assert shown[name]["metrics"]["metrics.json"]["data"]["result"] == 5 * factor
    assert result.stdout.splitlines() == [
        "experiment  status  b.factor  result  half.value",
        "fixed-1     done    2         10      5",
        "fixed-2     done    3         15      7.5",
    ]
    assert "Traceback" not in result.stderr


EXPECTED_LIST = "grid b.factor: expected a non-empty list of values, got"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "b.factor=2"], f"{EXPECTED_LIST} 2 (a fixed value is --set b.factor=2)"),
        (["--grid", "b.factor=[]"], f"{EXPECTED_LIST} []"),
        (["--grid", "b.factor=[1, 2]", "--set", "b.factor=3"], "b.factor: both swept (--grid) and fixed"),
    ],
)
def test_a_bad_grid_is_refused_before_any_experiment_runs(dvc_repo: Path, args: list[str], message: str):
    started = time.monotonic()
    command = [sys.executable, "-m", "pipeline.sweep", *args, "--repo-dir", str(dvc_repo)]
    result = _run(command, dvc_repo, _env(), timeout=120)

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"python -m pipeline.sweep: error: {message}")
    assert "Starting temporary server" not in result.stderr  # Prefect never started
    assert exp_show(dvc_repo) == {} and not (dvc_repo / "runs.log").exists()
    assert time.monotonic() - started < 60


def test_the_table_marks_failures_and_leaves_fixed_params_out():
    rows = [
        {"experiment": "s-1", "status": "done", "train.gamma": 1, "train.kimg": 2, "fid50k_full": 123.456,
         "loss_G": 1.5, "pr50k3_full_recall": 0.25},  # fmt: skip
        {"experiment": "s-2", "status": "failed", "train.gamma": 2, "train.kimg": 2, "fid50k_full": None,
         "loss_G": None, "pr50k3_full_recall": None, "error": "failed to reproduce 'train'"},  # fmt: skip
    ]
    assert format_table(rows, ["train.gamma"], fixed=["train.kimg"]).splitlines() == [
        "experiment  status  train.gamma  fid50k_full  pr50k3_full_recall",
        "s-1         done    1            123.5        0.25",
        "s-2         failed  2            -            -  error: failed to reproduce 'train'",
    ]


# --- stopping a sweep ------------------------------------------------------------------------------------


@pytest.fixture
def slow_repo(tmp_path: Path) -> Path:
    """A one-stage pipeline whose stage records its pid under the project's pids/ and then sleeps."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "slow.py").write_text(
        textwrap.dedent(
            """
            import os, pathlib, time, yaml
            seconds = yaml.safe_load(open("params.yaml"))["slow"]["seconds"]
            pids = pathlib.Path(os.environ["DVC_ROOT"], "pids")
            pids.mkdir(exist_ok=True)
            (pids / f"{os.getpid()}").write_text(str(seconds))
            time.sleep(seconds)
            pathlib.Path("out.txt").write_text("done")
            """
        )
    )
    (repo / "params.yaml").write_text("slow:\n  seconds: 300\n")
    (repo / "dvc.yaml").write_text(
        f"stages:\n  slow:\n    cmd: {sys.executable} slow.py\n    deps: [slow.py]\n    params: [slow]\n"
        "    outs: [out.txt]\n"
    )
    (repo / ".gitignore").write_text("pids/\n")
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "x"]
    dvc_init = [sys.executable, "-m", "dvc", "init", "-q"]
    for command in (["git", "init", "-q"], dvc_init, ["git", "add", "-A"], commit):
        subprocess.run(command, cwd=repo, check=True, capture_output=True)
    return repo


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@flow_test
def test_sigterm_stops_the_experiments_the_sweep_started(slow_repo: Path):
    command = [sys.executable, "-m", "pipeline.sweep", "--grid", "slow.seconds=[300, 301]", "-j", "2",
               "--name", "stop", "--repo-dir", str(slow_repo)]  # fmt: skip
    sweep = subprocess.Popen(
        command, cwd=slow_repo, env=_env(PREFECT_API_URL=PREFECT_API_URL.value()), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    pids_dir = slow_repo / "pids"
    deadline = time.monotonic() + 180
    while len(list(pids_dir.glob("*"))) < 2 and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
    stages = [int(path.name) for path in pids_dir.glob("*")]
    assert len(stages) == 2 and all(_alive(pid) for pid in stages), sweep.communicate(timeout=5)[0]

    sweep.send_signal(signal.SIGTERM)
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in stages) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in stages), output
    assert not (slow_repo / "out.txt").exists()


# --- quiet by default -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_flow_run_prints_no_telemetry_errors_and_its_summary_once(dvc_repo: Path, tmp_path: Path):
    # As a user runs it: no Prefect server configured (a temporary one starts), telemetry settings unset.
    env = _env(PREFECT_HOME=str(tmp_path / "prefect"))
    unset = ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "MLFLOW_DISABLE_TELEMETRY")
    for key in (*unset, "DO_NOT_TRACK", "DVC_NO_ANALYTICS"):
        env.pop(key, None)
    result = _run([sys.executable, "-m", "pipeline.flow", "--repo-dir", str(dvc_repo)], dvc_repo, env)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for noise in ("Traceback", "database is locked", "telemetry", "ERROR"):
        assert noise not in output, output
    assert result.stdout.splitlines()[0] == "workspace"
    for stage in ("a", "b", "c"):
        assert sum(line.startswith(f"  {stage} ") for line in output.splitlines()) == 1, output
