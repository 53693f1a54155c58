"""A fresh clone is clean before it has done anything (issue 16).

The project commits code and params, not one machine's results: `dvc.lock`, `metrics/`, `plots/train.tsv`
and `models/mlflow_run.json` are written by the user's own first `dvc repro` (DVC stages them; committing
them makes that run the baseline of `dvc metrics diff` / `dvc plots diff`), and every `dvc exp run`
keeps its own. A committed `dvc.lock` would claim the stages are up to date with code it was not made
with as soon as the next commit changes a stage's code. Should one be committed all the same (a
release that ships its results), these tests hold it to the tree: no stage of it may record other code,
and its metrics may hold no machine's paths.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ("dvc.lock", "metrics", "plots", "models/mlflow_run.json")

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """`git clone` of this checkout's HEAD: what a new user gets."""
    path = tmp_path_factory.mktemp("clone") / "stylegan"
    git("clone", "--quiet", str(ROOT), str(path))
    return path


def test_dvc_status_of_a_fresh_clone_shows_no_stage_recorded_for_other_code(clone: Path):
    if not (clone / "dvc.lock").exists():
        return  # nothing claims to be up to date: every stage runs on the first `dvc repro`
    status = json.loads(subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=clone,
                                       capture_output=True, text=True, check=True).stdout)  # fmt: skip
    tracked = set(git("ls-files", cwd=clone).splitlines())
    stale = {}
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            code = [path for path, state in (change.get("changed deps") or {}).items()
                    if state != "new" and (path in tracked or any(f.startswith(path + "/") for f in tracked))]
            if code:  # fmt: skip
                stale[stage] = code
    assert stale == {}, f"the committed dvc.lock records other code for {stale}"
    assert git("status", "--porcelain", cwd=clone) == ""


def test_committed_results_hold_no_machine_paths(clone: Path):
    files = [f for f in git("ls-files", "--", *RESULTS, cwd=clone).splitlines() if f != "models/.gitignore"]
    for file in files:
        if file == "models/mlflow_run.json":
            continue  # names its tracking store: a server, or this checkout's mlflow.db
        text = (clone / file).read_text()
        for path in ("/work/", "/home/", "/root/", "/Users/", str(ROOT)):
            assert path not in text, f"{file} holds a machine path ({path})"
