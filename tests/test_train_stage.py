"""The train stage's glue: params -> config, curves across resume, torchrun launch, MLflow logging."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.params import parse_params
from pipeline.shards import prepare_shards
from pipeline.training import CurveWriter, read_curves, torchrun_command, training_config

ROOT = Path(__file__).resolve().parents[1]


def test_params_reach_the_training_config():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(gamma=3.5, batch=8, aug="noaug")
    raw["model"].update(channel_max=32, mapping_layers=3)
    config = training_config(parse_params(raw), resolution=32)
    assert (config.gamma, config.batch, config.aug) == (3.5, 8, "noaug")
    assert (config.channel_max, config.mapping_layers, config.resolution) == (32, 3, 32)


def test_preset_fills_what_params_leave_unset():
    raw = yaml.safe_load((ROOT / "configs/ffhq256.yaml").read_text())
    config = training_config(parse_params(raw), resolution=256)
    # paper256 in the official train.py: batch 64, gamma 1, ema 20 kimg, 8 mapping layers, fmaps 0.5
    assert (config.batch, config.gamma, config.ema_kimg, config.mapping_layers) == (64, 1, 20, 8)
    assert config.channel_base == 16384


def test_curves_drop_ticks_repeated_after_resume(tmp_path):
    path = tmp_path / "curves.tsv"
    writer = CurveWriter(path)
    for kimg in (0.0, 1.0, 2.0, 3.0):
        writer.append(kimg, {"loss_G": kimg})
    # Killed after 3 kimg, resumed from the checkpoint at 2 kimg: ticks 2 and 3 come again.
    resumed = CurveWriter(path)
    resumed.append(2.0, {"loss_G": 20.0})
    resumed.append(3.0, {"loss_G": 30.0, "augment_p": 0.1})
    rows = read_curves(path)
    assert [row["kimg"] for row in rows] == ["0.000", "1.000", "2.000", "3.000"]
    assert [row["loss_G"] for row in rows] == ["0.0", "1.0", "20.0", "30.0"]
    assert rows[0]["augment_p"] == "" and rows[3]["augment_p"] == "0.1"


def test_torchrun_command(monkeypatch):
    monkeypatch.delenv("NNODES", raising=False)
    assert torchrun_command(4, ["stages/train.py"])[-3:] == [
        "--nproc_per_node=4",
        "--standalone",
        "stages/train.py",
    ]
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    command = torchrun_command(8, ["stages/train.py"])
    assert "--nnodes=2" in command and "--node_rank=1" in command and "--master_addr=10.0.0.1" in command
    assert "--standalone" not in command


@pytest.mark.slow
def test_two_process_training_stage_on_cpu(tmp_path):
    """train.gpus=2 relaunches the stage under torchrun (gloo on CPU); rank 0 alone logs and writes."""
    raw_dir = tmp_path / "data/raw"
    generate_demo(raw_dir, count=32, resolution=16, workers=1)
    prepare_shards(raw_dir, read_manifest(raw_dir), tmp_path / "data/shards", resolution=16, workers=1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(z_dim=16, w_dim=16, channel_base=64, channel_max=16)
    params["train"].update(gpus=2, kimg=0.032, batch=8, tick_kimg=0.016, snapshot_kimg=0.016, workers=0)
    params["train"]["sample_seeds"] = [0, 1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("DVC_ROOT", None)
    result = subprocess.run(
        [sys.executable, "-m", "stages.train"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[:6000]
    assert (tmp_path / "models/G_ema.safetensors").is_file()
    final = json.loads((tmp_path / "metrics/train.json").read_text())
    assert final["kimg"] == pytest.approx(0.032)
    run_id = json.loads((tmp_path / "models/mlflow_run.json").read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id)
    assert run.data.params["train.gpus"] == "2"
    assert "loss_G" in run.data.metrics or any(key.startswith("Loss") for key in run.data.metrics)
