"""Seed 001's Oxford Flowers 128 px setup (configs/flowers128.yaml) and its class-conditional variant: the
networks have the sizes the seed states, on the 8-layer `stylegan2` cfg with a 4-layer, 256-d mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.training import network_sizes, training_config
from stylegan.training import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]
FLOWERS_IMAGES, FLOWERS_CLASSES = 8189, 102


def sizes(preset: str) -> tuple[dict[str, int], TrainingConfig]:
    params = load_params(ROOT / "configs" / preset)
    config = training_config(params, params.prepare.resolution)
    c_dim = FLOWERS_CLASSES if params.model.conditional else 0
    return network_sizes(config, img_channels=3, c_dim=c_dim), config


@pytest.mark.slow  # builds four 20-30 M parameter networks
def test_flowers128_has_seed_001s_networks_and_length():
    counts, config = sizes("flowers128.yaml")
    # The seed: G from about 23 M to 20 M parameters once the mapping is cut from 8 to 4 layers and z from
    # 512 to 256. Within 5%:
    assert counts["G"] == pytest.approx(20e6, rel=0.05)
    assert counts["D"] == pytest.approx(23.9e6, rel=0.01)
    assert (config.cfg, config.resolution, config.mapping_layers, config.z_dim) == ("stylegan2", 128, 4, 256)
    # the rest is the stylegan2 cfg's
    assert (config.batch, config.gamma, config.lr_g, config.ema_kimg) == (32, 10, 0.002, 10)
    assert config.kimg == pytest.approx(800 * FLOWERS_IMAGES / 1000)  # 800 passes over the data
    params = load_params(ROOT / "configs/flowers128.yaml")
    assert not params.model.conditional and params.data.source == "flowers102"
    assert params.train.export == "best_fid" and params.train.metrics == ["fid10k_full"]

    # The mapping it replaces: 8 layers, 512-d (the base the seed starts from).
    base = dataclasses.replace(config, mapping_layers=8, z_dim=512, w_dim=512)
    before = network_sizes(base, img_channels=3, c_dim=0)
    assert before["G"] - counts["G"] == pytest.approx(3.7e6, rel=0.05) and before["D"] == counts["D"]


@pytest.mark.slow
def test_the_conditional_variant_differs_only_by_the_labels():
    counts, config = sizes("flowers128_cond.yaml")
    plain, plain_config = sizes("flowers128.yaml")
    assert config.to_dict() == plain_config.to_dict()
    assert counts["G"] == pytest.approx(20e6, rel=0.05) and counts["G"] > plain["G"]
    assert counts["D"] > plain["D"]
    assert load_params(ROOT / "configs/flowers128_cond.yaml").model.conditional
