"""The everyday DVC workflow as a user meets it, each point through the user's own command (issue 16):
bytecode caches never invalidate a stage, a stage run under the wrong `python` says so in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


def git_dvc_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text).lstrip())
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "tests@example.invalid"],
        ["git", "config", "user.name", "tests"],
        [*DVC, "init", "-q"],
    ):
        run(command, path)
    return path


# --- .dvcignore: only source invalidates a stage --------------------------------------------------------


def _bytecode_repo(path: Path, dvcignore: bool) -> Path:
    repo = git_dvc_repo(
        path,
        {
            "lib/__init__.py": "",
            "lib/model.py": "VALUE = 3\n",
            "dvc.yaml": f"""
                stages:
                  use:
                    cmd: {sys.executable} -c "import lib.model; open('out.txt', 'w').write('x')"
                    deps: [lib]
                    outs: [out.txt]
            """,
        },
    )
    if dvcignore:
        shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    env.pop("PYTHONDONTWRITEBYTECODE")
    run([*DVC, "repro"], repo, env)
    # What the tests or any import of the module leave behind.
    run([sys.executable, "-c", "import lib.model"], repo, env)
    (repo / ".pytest_cache").mkdir()
    (repo / "lib/.pytest_cache").mkdir()
    (repo / "lib/.pytest_cache/README.md").write_text("cache")
    assert list((repo / "lib/__pycache__").glob("model.*.pyc"))
    return repo


def test_bytecode_and_tool_caches_leave_dvc_status_clean(tmp_path: Path):
    repo = _bytecode_repo(tmp_path / "with", dvcignore=True)
    status = run([*DVC, "status"], repo)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout


def test_without_the_dvcignore_the_same_caches_would_mark_the_stage_changed(tmp_path: Path):
    repo = _bytecode_repo(tmp_path / "without", dvcignore=False)
    status = run([*DVC, "status"], repo)
    assert "modified:           lib" in status.stdout, status.stdout


# --- stage commands under the wrong interpreter ---------------------------------------------------------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A real interpreter without the project's dependencies (like a system `python` outside the venv)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], ROOT)
    return venv / "bin"


def test_a_stage_run_by_dvc_under_a_python_without_the_dependencies_says_to_activate_the_venv(
    tmp_path: Path, bare_python: Path
):
    # As `.venv/bin/dvc exp run` from a shell without the venv: DVC's shell finds another `python` first.
    repo = git_dvc_repo(
        tmp_path / "repo",
        {"dvc.yaml": "stages:\n  download:\n    cmd: python -m stages.download\n"},
    )
    env = {**os.environ, "PATH": f"{bare_python}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    result = run([str(Path(sys.executable).parent / "dvc"), "repro"], repo, env, check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "No module named" not in output, output
    [line] = [line for line in output.splitlines() if line.startswith("stage command:")]
    assert str(bare_python / "python") in line and "PIL" in line
    assert "source .venv/bin/activate" in line and "make run" in line


def test_the_same_stage_module_runs_under_the_project_python():
    result = run([sys.executable, "-c", "import stages.download"], ROOT)
    assert result.stdout == "" and result.stderr == ""
