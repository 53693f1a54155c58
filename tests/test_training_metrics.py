"""Metrics during training (`train.metrics`): when they are measured, where they land (curves, MLflow,
the stage's metrics), the real-image features cached once, the best snapshot kept and exported.

A small TorchScript network with the calling convention of NVIDIA's ``inception-2015-12-05.pt`` stands in
for Inception (as in tests/test_metrics_detectors.py), so that 5,000 generated images take seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.params import ParamsError, parse_params
from pipeline.shards import prepare_shards
from pipeline.training import read_curves
from pipeline.training_metrics import BEST_GENERATOR, STATE_FILE, TrainingMetrics, selection_metric
from tests.test_metrics_detectors import StandInInception

ROOT = Path(__file__).resolve().parents[1]


def schedule(every_kimg, checkpoints, total_kimg=1.0):
    """The kimg of the ticks at which a fresh tracker measures, given the ticks that write checkpoints."""
    tracker = TrainingMetrics(
        ["fid5k_full"], run_dir=Path("/nonexistent"), shards_dir=Path("."), total_kimg=total_kimg,
        every_kimg=every_kimg,
    )  # fmt: skip
    due = []
    for kimg in checkpoints:
        if tracker.due(kimg, at_checkpoint=True):
            due.append(kimg)
            tracker.measured.append({"kimg": kimg, "values": {}})
    return due


def test_measurements_come_at_the_first_checkpoint_after_each_interval_and_at_the_end():
    ticks = [0.1 * i for i in range(1, 11)]
    assert schedule(None, ticks) == pytest.approx(ticks)  # None: every checkpoint
    assert schedule(0.25, ticks) == pytest.approx([0.3, 0.5, 0.8, 1.0])
    assert schedule(0.5, [0.4, 0.8, 1.2], total_kimg=1.2) == pytest.approx([0.8, 1.2])
    tracker = TrainingMetrics([], run_dir=Path("/x"), shards_dir=Path("."), total_kimg=1.0)
    assert not tracker.due(1.0, at_checkpoint=True)  # nothing to measure
    tracker = TrainingMetrics(["fid5k_full"], run_dir=Path("/x"), shards_dir=Path("."), total_kimg=1.0)
    assert not tracker.due(1.0, at_checkpoint=False)  # only with a checkpoint to resume from


def test_selection_metric_and_export_params():
    assert selection_metric(["kid50k_full", "fid10k_full", "fid5k_full"]) == "fid10k_full"
    assert selection_metric(["kid50k_full"]) is None
    params = parse_params({"train": {"metrics": ["fid5k_full"], "metric_kimg": 50, "export": "best_fid"}})
    assert (params.train.metrics, params.train.metric_kimg, params.train.export) == (
        ["fid5k_full"],
        50,
        "best_fid",
    )
    assert parse_params({}).train.metrics == [] and parse_params({}).train.export == "last"
    with pytest.raises(ParamsError, match="export=best_fid keeps the snapshot with the best FID"):
        parse_params({"train": {"metrics": ["kid50k_full"], "export": "best_fid"}})
    with pytest.raises(ParamsError, match="train.metrics.0: input should be"):
        parse_params({"train": {"metrics": ["fid5k"]}})
    with pytest.raises(ParamsError, match="train.metrics: pr50k3_full gives several numbers"):
        parse_params({"train": {"metrics": ["pr50k3_full"]}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The train stage with train.metrics=[fid5k_full] after every 0.032 kimg and export=best_fid, on 32 demo
    images at 16 px; then the same command again (already complete)."""
    tmp = tmp_path_factory.mktemp("train_metrics")
    raw_dir = tmp / "data/raw"
    generate_demo(raw_dir, count=32, resolution=16, workers=1)
    prepare_shards(raw_dir, read_manifest(raw_dir), tmp / "data/shards", resolution=16, workers=1)
    detectors = tmp / "detector-cache"
    (detectors / "detectors").mkdir(parents=True)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(StandInInception()), str(detectors / "detectors/inception-2015-12-05.pt"))

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(z_dim=16, w_dim=16, channel_base=64, channel_max=16)
    params["train"].update(kimg=0.064, batch=8, tick_kimg=0.016, snapshot_kimg=0.016, workers=0)
    params["train"].update(metrics=["fid5k_full"], metric_kimg=0.032, export="best_fid", sample_seeds=[0, 1])
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "STYLEGAN_CACHE_DIR": str(detectors),
    }
    env.pop("DVC_ROOT", None)
    logs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "stages.train"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-6000:]
        logs.append(result.stderr)
    return tmp, logs


@pytest.mark.slow
def test_fid_is_measured_on_schedule_into_the_curves_and_the_stage_metrics(trained):
    tmp, logs = trained
    rows = read_curves(tmp / "plots/train.tsv")
    measured = {row["kimg"]: float(row["fid5k_full"]) for row in rows if row.get("fid5k_full")}
    # Ticks end at 0.008 (the first step), 0.024, 0.040, 0.056 and 0.064, each with a checkpoint: the
    # first one past 0.032 kimg is measured, and the end.
    assert list(measured) == ["0.040", "0.064"]
    assert all(value > 0 for value in measured.values())
    assert all(row["loss_G"] for row in rows)  # the measured ticks keep their training statistics
    final = json.loads((tmp / "metrics/train.json").read_text())
    assert final["fid5k_full"] == pytest.approx(measured["0.064"])
    assert final["best_fid5k_full"] == pytest.approx(min(measured.values()))
    assert f"{final['best_fid5k_full_kimg']:.3f}" in measured
    assert final["G_parameters"] > 0 and final["D_parameters"] > 0
    assert "networks: G " in logs[0] and " parameters, D " in logs[0]


@pytest.mark.slow
def test_the_best_snapshot_is_exported_and_recorded(trained):
    tmp, _ = trained
    final = json.loads((tmp / "metrics/train.json").read_text())
    config = json.loads((tmp / "models/G_ema.json").read_text())
    assert config["export"] == {
        "choice": "best_fid",
        "metric": "fid5k_full",
        "value": pytest.approx(final["best_fid5k_full"]),
        "kimg": pytest.approx(final["best_fid5k_full_kimg"]),
    }
    assert config["parameters"] == {"G": final["G_parameters"], "D": final["D_parameters"]}
    [run_dir] = [p.parent for p in (tmp / ".cache/checkpoints").glob(f"*/*/{STATE_FILE}")]
    best, exported = load_file(run_dir / BEST_GENERATOR), load_file(tmp / "models/G_ema.safetensors")
    assert best.keys() == exported.keys() and all(torch.equal(best[k], exported[k]) for k in best)


@pytest.mark.slow
def test_features_are_cached_once_and_a_complete_run_is_not_measured_again(trained):
    tmp, logs = trained
    assert len(list((tmp / ".cache/features").glob("*.npy"))) == 1  # one dataset, one detector
    [state_file] = (tmp / ".cache/checkpoints").glob(f"*/*/{STATE_FILE}")
    state = json.loads(state_file.read_text())
    assert [m["kimg"] for m in state["measured"]] == pytest.approx([0.040, 0.064])  # not again in run 2
    assert "nothing to do" in logs[1]


@pytest.mark.slow
def test_mlflow_has_the_fid_curve_and_the_network_sizes(trained):
    tmp, _ = trained
    run_id = json.loads((tmp / "models/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    history = client.get_metric_history(run_id, "fid5k_full")
    assert sorted({m.step for m in history}) == [40, 64]  # step: images shown
    tags = client.get_run(run_id).data.tags
    final = json.loads((tmp / "metrics/train.json").read_text())
    assert tags["G_parameters"] == str(final["G_parameters"]) and tags["D_parameters"] == str(
        final["D_parameters"]
    )
