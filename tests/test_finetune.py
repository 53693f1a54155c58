"""Fine-tuning: `train.resume_from` from NVIDIA's snapshot pickle, Freeze-D, URL sources, mismatches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.params import parse_params
from pipeline.pretrained import fetch, initialise, load_pretrained
from pipeline.stage import StageError
from pipeline.training import training_config
from stylegan.interop import load_official_pkl
from stylegan.training import train
from stylegan.training.configs import build_networks
from stylegan.training.data import TensorImageDataset
from tests.test_download_server import FileServer

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT.parent / "shared" / "reference" / "sg2ada_small.pkl"
pytestmark = pytest.mark.skipif(
    not SNAPSHOT.is_file(), reason=f"{SNAPSHOT} (shared reference data) is absent"
)

# The architecture of the shared snapshot (its G and D were built with different widths).
SNAPSHOT_MODEL = dict(z_dim=96, w_dim=112, mapping_layers=2, channel_base=2048, channel_max=96,
                      d_channel_base=1024, d_channel_max=96, num_fp16_res=2, mbstd_group_size=4)  # fmt: skip


def params(**train):
    train = {"cfg": "auto", "batch": 4, "resume_from": str(SNAPSHOT), **train}
    return parse_params({"model": SNAPSHOT_MODEL, "train": train})


def test_the_snapshot_fills_networks_built_from_params():
    p = params()
    pretrained = load_pretrained(str(SNAPSHOT))
    config = training_config(p, 64, pretrained)
    assert config.aug_p == pytest.approx(0.23, rel=1e-6)  # the snapshot's augmentation strength
    assert config.ada_kimg == 100 and config.ema_rampup is None  # as NVIDIA's train.py --resume
    G, D, G_ema = initialise(pretrained, *build_networks(config, img_channels=3, c_dim=0))
    source = load_official_pkl(SNAPSHOT)
    for ours, theirs in ((G, source["G"]), (D, source["D"]), (G_ema, source["G_ema"])):
        for name, tensor in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[name], tensor), name


def test_a_mismatching_config_lists_every_mismatching_shape():
    p = parse_params({"model": {**SNAPSHOT_MODEL, "channel_base": 1024}, "train": {"cfg": "auto"}})
    pretrained = load_pretrained(str(SNAPSHOT))
    config = training_config(p, 64, pretrained)
    with pytest.raises(StageError, match="does not fit") as info:
        initialise(pretrained, *build_networks(config, img_channels=3, c_dim=0))
    message = str(info.value)
    assert "G.synthesis.b16.conv0.weight: expected [64, 96, 3, 3], got [96, 96, 3, 3]" in message
    last = "G_ema.synthesis.b64.torgb.weight: expected [3, 16, 1, 1], got [3, 32, 1, 1]"
    assert last in message  # every mismatch is listed


def test_freeze_d_keeps_the_first_layers_of_d_fixed(tmp_path):
    p = params(freeze_d=2, kimg=1.008, tick_kimg=0.004, snapshot_kimg=0.008, sample_seeds=[0], aug="noaug")
    pretrained = load_pretrained(str(SNAPSHOT))
    config = training_config(p, 64, pretrained)
    assert config.freeze_d == 2
    G, D, G_ema = initialise(pretrained, *build_networks(config, img_channels=3, c_dim=0))
    before = {k: v.clone() for k, v in D.state_dict().items()}
    images = (torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    summary = train(config, TensorImageDataset(images), tmp_path, device="cpu", G=G, D=D, G_ema=G_ema,
                    start_nimg=1000)  # fmt: skip
    after = summary.D.state_dict()
    frozen = ("b64.fromrgb.weight", "b64.fromrgb.bias", "b64.conv0.weight", "b64.conv0.bias")
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert not torch.equal(after["b64.conv1.weight"], before["b64.conv1.weight"])  # the third layer trains
    assert summary.cur_nimg == 1008  # counted on from resume_kimg


@pytest.mark.slow
def test_a_url_is_downloaded_once_and_verified_then_works_offline(tmp_path):
    with FileServer() as server:
        url = server.add("/snapshots/network-snapshot-000100.pkl", SNAPSHOT.read_bytes())
        first = fetch(url, tmp_path)
    assert first.read_bytes() == SNAPSHOT.read_bytes()
    assert fetch(url, tmp_path) == first  # the server is gone: the verified copy is used
    record = json.loads(first.with_name(first.name + ".json").read_text())
    assert record["url"] == url and len(record["sha256"]) == 64
    with pytest.raises(StageError, match="cannot download .* \\(offline\\?\\)"):
        fetch(url.replace("000100", "000200"), tmp_path)


@pytest.mark.slow
def test_fine_tuning_runs_through_dvc_repro_from_params_alone(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("stylegan", "pipeline", "stages", "dvc.yaml", "pyproject.toml"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(
            source,
            repo / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}),
        )
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["demo"].update(count=24, resolution=64)
    raw["align"].update(method="none", output_size=64)
    raw["prepare"].update(resolution=64, shard_size=24)
    raw["model"] = {"arch": "stylegan2", "conditional": False, **SNAPSHOT_MODEL}
    raw["train"].update(cfg="auto", kimg=1.008, resume_from=str(SNAPSHOT), resume_kimg=1, freeze_d=4, batch=4,
                        tick_kimg=0.004, snapshot_kimg=0.008, workers=0, sample_seeds=[0, 1])  # fmt: skip
    raw["w_avg"].update(num_samples=64, batch=32)
    raw["eval"].update(metrics=["fid50k_full"], num_gen=16, num_real=16, batch=8)
    raw["report"].update(grid_seeds=[0, 1], truncation_sweep=[0.0, 1.0], interpolation_frames=2,
                         mixing_rows=[1], mixing_cols=[2], interpolation_seeds=[0, 1])  # fmt: skip
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.pop("DVC_ROOT", None)
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "repro", "train"]):  # fmt: skip
        result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "fine-tuning from" in result.stderr + result.stdout
    metrics = json.loads((repo / "metrics/train.json").read_text())
    assert metrics["kimg"] == pytest.approx(1.008)
    assert json.loads((repo / "models/G_ema.json").read_text())["training"]["freeze_d"] == 4
