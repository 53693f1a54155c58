"""Bad params are refused with exit code 2 by every stage (and by `python -m pipeline check`), with a
message naming the key, before any work: no file is written, none is removed. (That a typo followed by
`dvc repro` keeps the trained model, thanks to the `check` stage, is tested in test_crash_safety.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
MODULES = {name: stage["cmd"].split()[2] for name, stage in DVC_STAGES.items()}

TYPO = {"train": {"gama": 2}}  # gamma, misspelt
UNUSED_BY_FAMILY = {"model": {"arch": "progan"}, "train": {"style_mixing_prob": 0.5}}  # ProGAN: no styles


def refused(tmp_path: Path, params: dict, *command: str) -> subprocess.CompletedProcess:
    """Run `command` in a folder holding only `params` (as params.yaml) and a file that must survive."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "models").mkdir()
    (tmp_path / "models/G_ema.safetensors").write_bytes(b"the trained model")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("DVC_ROOT", None)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before, f"{' '.join(command)} touched files: {result.stderr[-2000:]}"
    assert (tmp_path / "models/G_ema.safetensors").read_bytes() == b"the trained model"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(MODULES))
def test_every_stage_refuses_a_typo_with_exit_code_2_naming_the_key(tmp_path, stage):
    result = refused(tmp_path, TYPO, sys.executable, "-m", MODULES[stage])
    assert result.returncode == 2, result.stderr[-3000:]
    expected = f"{stage}: invalid params in params.yaml:\n  train.gama: unknown key\nNothing was run.\n"
    assert result.stderr == expected


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["check", "train"])
def test_keys_the_model_family_does_not_use_are_refused_with_exit_code_2(tmp_path, stage):
    result = refused(tmp_path, UNUSED_BY_FAMILY, sys.executable, "-m", MODULES[stage])
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{stage}: train.style_mixing_prob: not used by model.arch=progan; remove them" in result.stderr


@pytest.mark.slow
def test_pipeline_check_exits_2_on_bad_params_and_0_on_good_ones(tmp_path):
    result = refused(tmp_path, UNUSED_BY_FAMILY, sys.executable, "-m", "pipeline", "check", "params.yaml")
    assert result.returncode == 2
    assert "train.style_mixing_prob: not used by model.arch=progan" in result.stderr
    (tmp_path / "params.yaml").write_text("train:\n  gamma: 2\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "check", "params.yaml"]
    ok = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "params.yaml: ok\n", ok.stderr


def test_the_check_stage_comes_first_and_every_stage_depends_on_it():
    check = DVC_STAGES["check"]
    assert "params.yaml" in check["deps"] and check["outs"][0] == ".cache/params.checked"
    for name, stage in DVC_STAGES.items():
        if name != "check":
            assert ".cache/params.checked" in stage["deps"], f"stage {name} does not wait for the check"
