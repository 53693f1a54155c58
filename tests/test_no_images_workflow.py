"""A folder of files that only look like images, run through `dvc repro` as a user does (issue 16): the
first stage that opens them (align) stops with one line naming the file that says why, and prepare, run on
its own after it, names that same file rather than its own empty one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", "pyproject.toml")
EXPECTED = (
    "no usable image among the 3 listed (3 not an image (unrecognised format)); "
    "reasons in data/aligned/skipped.jsonl"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("no_images")
    photos = tmp / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_text("not an image\n")
    (photos / "scan.png").write_text("<html>a saved web page</html>\n")
    (photos / "empty.jpeg").write_bytes(b"\x00" * 64)
    repo = tmp / "repo"
    repo.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, repo / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="folder")
    params["data"]["folder"].update(path=str(photos))
    params["align"].update(method="center_crop", output_size=32, workers=1)
    params["prepare"].update(resolution=16, workers=1)
    params["train"].setdefault("metrics", [])  # dvc.yaml's training-metrics chart reads it
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(repo)}  # fmt: skip
    env.pop("DVC_ROOT", None)
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


def test_dvc_repro_stops_at_align_with_one_line_naming_its_reasons_file(project):
    repo, env = project
    result = subprocess.run([sys.executable, "-m", "dvc", "repro", "prepare"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    assert "Running stage 'download'" in output and "Running stage 'prepare'" not in output
    assert [line for line in output.splitlines() if "no usable image" in line] == [f"align: {EXPECTED}"]
    reasons = (repo / "data/aligned/skipped.jsonl").read_text().splitlines()
    assert len(reasons) == 3 and all("not an image" in line for line in reasons)


def test_prepare_run_after_it_names_the_align_stages_file(project):
    repo, env = project
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"prepare: {EXPECTED}"
    assert "Traceback" not in result.stderr
