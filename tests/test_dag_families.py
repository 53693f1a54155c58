"""`dvc repro` trains, evaluates and reports ProGAN, StyleGAN v1 and StyleGAN3 on the demo data from params
alone (tiny settings, a real DVC repo in a temp dir; StyleGAN2 runs in tests/test_dag.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_dag import project_repo, run

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

GROWTH = dict(start_resolution=4, fade_kimg=0.016, stable_kimg=0.008, batch_schedule={4: 8, 8: 8, 16: 8})
MODELS = {
    "progan": dict(arch="progan", z_dim=16, channel_base=128, channel_max=16, conditional=False, **GROWTH),
    "stylegan1": dict(arch="stylegan1", z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                      channel_max=16, conditional=False, **GROWTH),
    "stylegan3": dict(arch="stylegan3", config="t", z_dim=16, w_dim=16, channel_base=256, channel_max=16,
                      num_fp16_res=0, conditional=False),
}  # fmt: skip
PRESETS = {"progan": "paper", "stylegan1": "seed000", "stylegan3": "stylegan3-t"}
PROGRESSIVE = ("progan", "stylegan1")


def tiny_params(arch: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["demo"].update(count=48, resolution=32)
    params["align"].update(method="center_crop", output_size=32)
    params["prepare"].update(resolution=16, shard_size=24)
    params["model"] = MODELS[arch]
    params["train"].update(cfg=PRESETS[arch], kimg=0.064, batch=8, tick_kimg=0.016, snapshot_kimg=0.032,
                           workers=0, aug="noaug", sample_seeds=[0, 1, 2, 3])  # fmt: skip
    params["w_avg"].update(num_samples=256, batch=128)
    params["eval"].update(
        metrics=["fid50k_full", "ppl2_wend", "eqt50k_int"], num_gen=32, num_real=32, batch=16
    )
    if arch == "stylegan3":
        params["train"].update(kimg=0.032, batch=4)
    params["report"].update(grid_seeds=[0, 1, 2, 3], truncation_sweep=[0.0, 1.0], interpolation_frames=2)
    params["report"].update(mixing_rows=[1, 2], mixing_cols=[3, 4], interpolation_seeds=[0, 1])
    return params


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request, tmp_path_factory):
    arch = request.param
    repo, env = project_repo(tmp_path_factory, f"dag-{arch}", tiny_params(arch))
    run([sys.executable, "-m", "dvc", "repro"], repo, env)
    return arch, repo


def test_the_model_names_its_family(trained):
    arch, repo = trained
    assert json.loads((repo / "models/G_ema.json").read_text())["family"] == arch


def test_training_grew_to_the_data_resolution_and_the_report_shows_it(trained):
    arch, repo = trained
    if arch not in PROGRESSIVE:
        pytest.skip(f"{arch} does not grow")
    curves = pd.read_csv(repo / "plots/train.tsv", sep="\t")
    assert curves["resolution"].iloc[0] == 4 and curves["resolution"].iloc[-1] == 16
    assert ((curves["alpha"] > 0) & (curves["alpha"] < 1)).any()
    page = (repo / "reports/index.html").read_text()
    assert "Growth: resolution" in page and "Growth: fade-in alpha" in page


def test_fid_is_measured_and_w_space_metrics_say_whether_they_apply(trained):
    arch, repo = trained
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    fid = metrics["fid32_full"]  # fid50k_full of the 32 images eval.num_gen asks for
    assert (fid if isinstance(fid, float) else fid["value"]) > 0
    w_avg = json.loads((repo / "models/w_avg.json").read_text())
    page = (repo / "reports/index.html").read_text()
    if arch == "progan":
        assert w_avg == {"available": False, "reason": w_avg["reason"]} and "no W space" in w_avg["reason"]
        assert "has no W space" in page and "Truncation sweep" not in page
    else:
        assert w_avg["num_samples"] == 256 and "Truncation sweep" in page
    provenance = json.loads((repo / "metrics/eval_provenance.json").read_text())
    eq = next(
        record for record in provenance.values() if record.get("metric", record.get("name")) == "eqt50k_int"
    )
    if arch == "stylegan3":
        assert eq["available"] and eq["value"] > 0 and "Moving the input" in page
    else:
        assert not eq["available"] and "not applicable" in eq["reason"]
