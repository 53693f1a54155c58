"""Two users, one workspace; many machines, one store (issue 14). The demo DAG on tiny params in a real
git + DVC repo: a second `dvc repro` while the first runs is refused at once by DVC's lock and changes
nothing; runtime-only params (devices, data-loader workers, where checkpoints live) leave every result
cached; the results travel through a DVC remote on a local path (a shared filesystem) to a fresh clone,
which is up to date without training and generates images."""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_dag import copy_project, tiny_params

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml")
DVC = [sys.executable, "-m", "dvc"]
RAN = re.compile(r"^Running stage '(?P<stage>[^']+)'", re.MULTILINE)
# What a clone must get from the remote (cached outputs) or from git (the small uncached results).
RESULTS = ("models/G_ema.safetensors", "models/w_avg.safetensors", "metrics/eval.json", "metrics/train.json",
           "plots/train.tsv", "reports/index.html")  # fmt: skip

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: float = 900):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        shown = f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, shown
    return result


def ran(output: str) -> list[str]:
    return RAN.findall(output)


def status(repo: Path, env: dict[str, str]) -> dict:
    return json.loads(run([*DVC, "status", "--json"], repo, env).stdout)


@dataclass
class Workspace:
    repo: Path
    env: dict[str, str]
    first: subprocess.CompletedProcess  # the `dvc repro` that ran the DAG
    second: subprocess.CompletedProcess  # started while the first was training
    second_seconds: float
    first_pid: int


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    repo = tmp_path_factory.mktemp("workspace") / "repo"
    repo.mkdir()
    copy_project(repo, PROJECT_FILES)
    params = tiny_params()
    params["eval"]["metrics"] = ["fid50k_full"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
    }
    for variable in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(variable, None)
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "test@example.invalid"],
                    ["git", "config", "user.name", "test"], [*DVC, "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "pipeline"]):  # fmt: skip
        run(command, repo, env)

    # The first user's `dvc repro`; the second user's starts while the first one trains.
    log_path = repo.parent / "first.log"
    with log_path.open("w") as log:
        first = subprocess.Popen([*DVC, "repro"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while "Running stage 'train'" not in log_path.read_text():
            assert first.poll() is None, f"the first dvc repro ended early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the first dvc repro never reached train"
            time.sleep(0.5)
        started = time.monotonic()
        second = run([*DVC, "repro"], repo, env, check=False, timeout=300)
        second_seconds = time.monotonic() - started
        first.wait(timeout=900)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
            first.wait()
    output = log_path.read_text()
    completed = subprocess.CompletedProcess(first.args, first.returncode, output, "")
    assert first.returncode == 0, output[-3000:]
    return Workspace(repo, env, completed, second, second_seconds, first.pid)


def test_a_second_repro_in_the_same_workspace_is_refused_at_once_and_changes_nothing(workspace: Workspace):
    second = workspace.second
    assert second.returncode != 0
    assert workspace.second_seconds < 60, second.stderr  # DVC's locks are tried for seconds, never waited on
    # While a stage runs, DVC locks its deps and outputs (.dvc/tmp/rwlock) and names who holds them; between
    # stages, the repo lock itself is held.
    error = second.stderr
    busy = "is busy, it is being blocked by" in error and f"(PID {workspace.first_pid})" in error
    assert busy or "Unable to acquire lock. Most likely another DVC process is running" in error
    assert ran(second.stdout + second.stderr) == []
    # The first one finished every stage, and what is on disk is what dvc.lock records.
    assert ran(workspace.first.stdout) == ["check", "download", "align", "prepare", "train", "w_avg",
                                           "evaluate", "report"]  # fmt: skip
    assert status(workspace.repo, workspace.env) == {}
    again = run([*DVC, "repro"], workspace.repo, workspace.env)
    assert ran(again.stdout) == []


RUNTIME_ONLY = {
    "train": {"device": "cpu", "workers": 2, "checkpoint_root": ".cache/other-checkpoints"},
    "w_avg": {"device": "cpu"},
    "eval": {"device": "cpu"},
}


def test_runtime_only_params_leave_every_result_cached(workspace: Workspace):
    repo, env = workspace.repo, workspace.env
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    try:
        params = yaml.safe_load(original)
        for section, values in RUNTIME_ONLY.items():
            params[section].update(values)
        params_file.write_text(yaml.safe_dump(params))
        # Only the params check sees the file change; train, w_avg and evaluate stay up to date.
        assert set(status(repo, env)) == {"check"}
        assert ran(run([*DVC, "repro"], repo, env).stdout) == ["check"]
        assert status(repo, env) == {}

        # Params that change results are still tracked, key by key.
        params["train"]["gamma"] = 0.5
        params_file.write_text(yaml.safe_dump(params))
        assert ran(run([*DVC, "repro", "check"], repo, env).stdout) == ["check"]
        changed = status(repo, env)
        assert set(changed) == {"train"}
        assert changed["train"] == [{"changed deps": {".cache/params/train.json": "modified"}}]
    finally:
        params_file.write_text(original)
        run([*DVC, "repro", "check"], repo, env)
    assert status(repo, env) == {}


def test_results_travel_through_a_remote_to_a_fresh_clone_that_trains_nothing(
    workspace: Workspace, tmp_path: Path
):
    repo, env = workspace.repo, workspace.env
    store = tmp_path / "shared-fs" / "stylegan-dvc"
    run([*DVC, "remote", "add", "--default", "--force", "store", str(store)], repo, env)
    # The first machine commits its run (dvc.lock, metrics, curves, the MLflow run file) and pushes the data.
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "results"], repo, env)
    pushed = run([*DVC, "push"], repo, env)
    assert "pushed" in pushed.stdout

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    clone_env = {**env, "PYTHONPATH": str(clone), "MLFLOW_TRACKING_URI": f"sqlite:///{clone}/mlflow.db"}
    assert not (clone / "models/G_ema.safetensors").exists()
    run([*DVC, "pull"], clone, clone_env)

    for result in RESULTS:
        assert filecmp.cmp(repo / result, clone / result, shallow=False), result
    assert status(clone, clone_env) == {}
    assert ran(run([*DVC, "repro"], clone, clone_env).stdout) == []
    generate = [sys.executable, "-m", "stylegan", "generate", "--network", "models/G_ema.safetensors",
                "--w-avg", "models/w_avg.safetensors", "--psi", "0.7", "--seeds", "0-2", "--outdir", "out",
                "--device", "cpu"]  # fmt: skip
    generated = run(generate, clone, clone_env)
    assert sorted(path.name for path in (clone / "out").iterdir()) == [
        "seed0000.png",
        "seed0001.png",
        "seed0002.png",
    ], generated.stdout
