"""Training configs, EMA, checkpoints and the training loop on a tiny 16 px StyleGAN2."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

from pipeline.shards import prepare_shards
from stylegan.dataset import ShardDataset
from stylegan.training import (
    CheckpointError,
    CheckpointManager,
    TrainingConfig,
    TrainingDiverged,
    build_networks,
    resolve_config,
    run_key,
    train,
)
from stylegan.training.checkpoint import atomic_save
from stylegan.training.data import GlobalOrderBatches, TensorImageDataset
from stylegan.training.ema import ema_beta, update_ema

TINY = dict(
    batch=4, batch_gpu=4, kimg=0.016, channel_base=512, channel_max=32, z_dim=32, w_dim=32, map=2, mbstd=4,
    num_fp16_res=0, tick_kimg=0.008, snapshot_kimg=0.008, sample_seeds=[0, 1, 2, 3], ada_kimg=0.1,
)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks are dominated by per-operation overhead, which extra threads only add to."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> TrainingConfig:
    return resolve_config("auto", 16, 1, {**TINY, **overrides})


def toy_dataset(n: int = 24, num_classes: int = 0) -> TensorImageDataset:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(n) % num_classes if num_classes else None
    return TensorImageDataset(images, labels, num_classes)


def load_plain(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- configs -------------------------------------------------------------------------------------------


def test_auto_preset_follows_the_official_heuristics():
    c = resolve_config("auto", 256, 1)
    assert (c.batch, c.batch_gpu, c.mbstd_group_size) == (16, 16, 4)
    assert c.channel_base == 16384 and c.channel_max == 512 and c.mapping_layers == 2
    assert (c.lr_g, c.lr_d) == (0.0025, 0.0025)
    assert c.gamma == pytest.approx(0.0002 * 256**2 / 16)  # 0.8192
    assert c.ema_kimg == pytest.approx(16 * 10 / 32) and c.ema_rampup == 0.05
    c = resolve_config("auto", 1024, 8)
    assert (c.batch, c.batch_gpu, c.channel_base, c.lr_g) == (32, 4, 32768, 0.002)
    assert c.gamma == pytest.approx(6.5536) and c.ema_kimg == pytest.approx(10)


@pytest.mark.parametrize(
    ("cfg", "batch", "batch_gpu", "mbstd", "channel_base", "lr", "gamma", "ema", "ramp", "mapping"),
    [
        ("stylegan2", 32, 4, 4, 32768, 0.002, 10, 10, None, 8),
        ("paper256", 64, 8, 8, 16384, 0.0025, 1, 20, None, 8),
        ("paper512", 64, 8, 8, 32768, 0.0025, 0.5, 20, None, 8),
        ("paper1024", 32, 4, 4, 32768, 0.002, 2, 10, None, 8),
        ("cifar", 64, 32, 32, 32768, 0.0025, 0.01, 500, 0.05, 2),
    ],
)
def test_paper_presets(cfg, batch, batch_gpu, mbstd, channel_base, lr, gamma, ema, ramp, mapping):
    c = resolve_config(cfg, 256, 1)
    assert (c.batch, c.batch_gpu, c.mbstd_group_size, c.channel_base) == (
        batch,
        batch_gpu,
        mbstd,
        channel_base,
    )
    assert (c.lr_g, c.gamma, c.ema_kimg, c.ema_rampup, c.mapping_layers) == (lr, gamma, ema, ramp, mapping)
    assert (c.pl_interval, c.r1_interval, c.num_fp16_res, c.conv_clamp) == (4, 16, 4, 256)
    if cfg == "cifar":
        assert (c.pl_weight, c.style_mixing_prob, c.d_architecture, c.kimg) == (0, 0, "orig", 100000)
    else:
        assert (c.pl_weight, c.style_mixing_prob, c.d_architecture, c.kimg) == (2, 0.9, "resnet", 25000)


def test_overrides_win_over_the_preset():
    c = resolve_config("paper256", 256, 2, {"batch": 32, "lr": 0.001, "fmaps": 0.25, "map": 4, "gamma": None})
    assert (c.batch, c.batch_gpu) == (32, 16)  # one round per GPU, as train.py --batch
    assert (c.lr_g, c.lr_d, c.channel_base, c.mapping_layers) == (0.001, 0.001, 8192, 4)
    assert c.gamma == 1  # None keeps the preset
    c = resolve_config("auto", 64, 1, {"lr_g": 0.01, "kimg": 5, "ema_kimg": 2, "channel_max": 64})
    assert (c.lr_g, c.lr_d, c.kimg, c.ema_kimg, c.channel_max) == (0.01, 0.0025, 5, 2, 64)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gamma_r1": 1}, "unknown training overrides: gamma_r1"),
        ({"batch": 6, "batch_gpu": 4}, "batch_gpu=4 must divide the per-GPU batch 6"),
        ({"gamma": -1}, "gamma=-1 must be >= 0"),
        ({"aug": "always"}, "aug='always' must be one of"),
        ({"augpipe": "bgcx"}, "augpipe='bgcx' must be one of"),
        ({"resolution": 32}, "'resolution' is an argument of resolve_config"),
    ],
)
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("auto", 64, 1, overrides)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown cfg 'paper64'"):
        resolve_config("paper64", 64, 1)


def test_config_round_trips_and_run_key_tracks_what_changes_the_weights():
    c = tiny_config()
    assert TrainingConfig.from_dict(c.to_dict()) == c
    key = run_key(c.identity(), "data-sha")
    assert key == run_key(tiny_config().identity(), "data-sha") and len(key) == 16
    assert key == run_key(tiny_config(kimg=5, tick_kimg=1, snapshot_kimg=2).identity(), "data-sha")
    assert key != run_key(tiny_config(gamma=0.5).identity(), "data-sha")
    assert key != run_key(c.identity(), "other-data")


def test_build_networks_follows_the_config():
    G, D = build_networks(tiny_config(), img_channels=3, c_dim=5)
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.num_ws) == (32, 32, 5, 16, 6)
    assert G.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    assert D.init_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 4
    assert D(torch.zeros(4, 3, 16, 16), torch.zeros(4, 5)).shape == (4, 1)


# --- EMA -----------------------------------------------------------------------------------------------


def test_ema_beta_has_the_configured_half_life_and_ramp_up():
    assert ema_beta(0, 32, 10, 0.05) == 0.0  # G_ema starts as a copy of G
    assert ema_beta(10_000, 32, 10, 0.05) == pytest.approx(0.5 ** (32 / 500))  # ramp: 5% of images seen
    assert ema_beta(10_000_000, 32, 10, 0.05) == pytest.approx(0.5 ** (32 / 10_000))
    beta = ema_beta(123, 32, 10, None)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)  # half-life of 10 kimg


def test_update_ema_lerps_parameters_and_copies_buffers():
    G, G_ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        G.weight.fill_(2.0)
        G_ema.weight.fill_(1.0)
        G.running_mean.fill_(5.0)
    update_ema(G_ema, G, beta=0.25)
    torch.testing.assert_close(G_ema.weight, torch.full([3], 0.25 * 1.0 + 0.75 * 2.0))
    torch.testing.assert_close(G_ema.running_mean, torch.full([3], 5.0))


# --- data order ----------------------------------------------------------------------------------------


def test_global_order_is_independent_of_ranks_and_restarts():
    single = GlobalOrderBatches(10, batch_size=4, rank=0, world_size=1, seed=3)
    steps = list(itertools.islice(single, 6))
    flat = [i for b in steps for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # whole epochs
    assert flat[:10] != flat[10:20]  # reshuffled per epoch
    ranks = [GlobalOrderBatches(10, batch_size=4, rank=r, world_size=2, seed=3) for r in range(2)]
    for step, parts in zip(steps, zip(*ranks, strict=True), strict=False):  # the samplers are endless
        assert parts[0] + parts[1] == step
    resumed = GlobalOrderBatches(10, batch_size=4, rank=0, world_size=1, seed=3, start=12)
    assert list(itertools.islice(resumed, 3)) == steps[3:6]


# --- checkpoints ---------------------------------------------------------------------------------------


def _state(value: float) -> dict:
    return {"G": {"w": torch.full([2], value)}, "counters": {"cur_nimg": 1}}


def test_checkpoints_keep_the_newest_and_load_without_code(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for nimg in (100, 200, 300):
        path = manager.save(_state(nimg), nimg)
    assert [p.name for p in manager.paths()] == ["checkpoint-000000000200.pt", "checkpoint-000000000300.pt"]
    assert path == manager.paths()[-1]
    found_path, state = manager.load_latest()
    assert found_path == path and float(state["G"]["w"][0]) == 300
    assert float(load_plain(path)["G"]["w"][0]) == 300


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(_state(1.0), 10)
    with pytest.raises(CheckpointError, match="non-finite weights in G.w"):
        manager.save(_state(math.nan), 20)
    assert [p.name for p in manager.paths()] == ["checkpoint-000000000010.pt"]


def test_damaged_and_half_written_checkpoints_are_skipped(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(_state(1.0), 10)
    (tmp_path / "checkpoint-000000000020.pt").write_bytes(b"truncated")
    (tmp_path / ".checkpoint-000000000030.pt.abc.tmp").write_bytes(b"partial")
    path, state = manager.load_latest()
    assert path.name == "checkpoint-000000000010.pt"
    assert not list(tmp_path.glob("*.tmp"))


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "x.pt"
    atomic_save({"a": torch.ones(2)}, target)

    class Unsaveable:
        pass

    with pytest.raises(Exception):  # noqa: B017 - torch.save's pickling error type is not part of its API
        atomic_save({"a": Unsaveable()}, target)
    assert load_plain(target)["a"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


# --- the training loop ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One short ADA run: 4 minibatches of 4 images, ticks of 8 images, a checkpoint every tick."""
    run_dir = tmp_path_factory.mktemp("baseline")
    reports = []
    summary = train(tiny_config(), toy_dataset(), run_dir, device="cpu", progress_callback=reports.append)
    return run_dir, summary, reports


def _assert_same_checkpoint(a: dict, b: dict) -> None:
    for net in ("G", "D", "G_ema", "opt_G", "opt_D"):
        flat_a, flat_b = _flatten(a[net]), _flatten(b[net])
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            assert torch.equal(flat_a[key], flat_b[key]), f"{net}.{key} differs"
    assert a["counters"] == b["counters"] | {"elapsed_sec": a["counters"]["elapsed_sec"]}
    assert torch.equal(a["loss"]["pl_mean"], b["loss"]["pl_mean"])
    assert torch.equal(a["augment"]["p"], b["augment"]["p"])


def _flatten(tree, prefix="") -> dict[str, torch.Tensor]:
    out = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        if isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
        else:
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def test_training_reaches_the_total_and_reports_every_tick(baseline):
    run_dir, summary, reports = baseline
    assert summary.cur_nimg == 16 and summary.resumed_from is None
    assert [r.tick for r in reports] == [0, 1, 2]  # tick 0 is the first minibatch, as NVIDIA's
    assert [r.kimg for r in reports] == [0.004, 0.012, 0.016]
    metrics = reports[-1].metrics
    for key in ("loss_G", "loss_D", "scores_real", "scores_fake", "augment_p", "img_per_sec", "sec_per_kimg",
                "peak_mem_mb", "eta_sec", "pl_mean"):  # fmt: skip
        assert math.isfinite(metrics[key]), key
    # The regularisers run on minibatch 0, then every 4 (PL) and 16 (R1) minibatches.
    assert reports[0].metrics["r1_penalty"] > 0 and reports[0].metrics["pl_penalty"] > 0
    assert "r1_penalty" not in metrics and "pl_penalty" not in metrics
    assert metrics["peak_mem_mb"] > 10 and metrics["eta_sec"] == 0
    assert summary.G_ema is not None and summary.G_ema.img_resolution == 16


def test_checkpoints_hold_plain_state_to_resume_from(baseline):
    run_dir, summary, reports = baseline
    assert [r.checkpoint.name if r.checkpoint else None for r in reports] == [
        None, "checkpoint-000000000012.pt", "checkpoint-000000000016.pt"
    ]  # fmt: skip
    state = load_plain(summary.last_checkpoint)
    assert state["counters"] | {"elapsed_sec": 0} == {
        "cur_nimg": 16, "cur_tick": 3, "batch_idx": 4, "tick_start_nimg": 16, "elapsed_sec": 0
    }  # fmt: skip
    assert TrainingConfig.from_dict(state["config"]) == tiny_config()
    rng = state["rng"]["ranks"][0]
    assert set(rng) == {"torch", "numpy", "python"} and rng["numpy"]["keys"].shape == (624,)
    assert float(state["augment"]["p"]) >= 0


def test_sample_grids_come_with_tick_zero_and_checkpoints(baseline):
    _, _, reports = baseline
    assert [r.samples is not None for r in reports] == [True, True, True]
    assert reports[0].samples.size == (32, 32)  # 4 seeds of 16 px in a 2 x 2 grid
    # Constant noise and fixed seeds: the grids differ only because G_ema moved.
    assert reports[1].samples.tobytes() != reports[0].samples.tobytes()


def test_training_is_deterministic_on_cpu(baseline, tmp_path):
    _, summary, _ = baseline
    again = train(tiny_config(), toy_dataset(), tmp_path, device="cpu")
    _assert_same_checkpoint(load_plain(summary.last_checkpoint), load_plain(again.last_checkpoint))
    other_seed = train(tiny_config(seed=1, kimg=0.004), toy_dataset(), tmp_path / "seed1", device="cpu")
    assert not torch.equal(
        load_plain(other_seed.last_checkpoint)["G"]["synthesis.b4.const"],
        load_plain(summary.last_checkpoint)["G"]["synthesis.b4.const"],
    )


def test_a_finished_run_is_not_trained_again(baseline, caplog):
    run_dir, summary, _ = baseline
    with caplog.at_level(logging.INFO, logger="stylegan.training.loop"):
        again = train(tiny_config(), toy_dataset(), run_dir, device="cpu")
    assert again.resumed_from == summary.last_checkpoint and again.cur_nimg == 16
    assert "nothing to do" in caplog.text


def test_resuming_with_a_different_setup_is_refused(baseline):
    run_dir, _, _ = baseline
    with pytest.raises(ValueError, match=r"different training setup \(gamma: .* -> 0\.5\)"):
        train(tiny_config(gamma=0.5, kimg=1), toy_dataset(), run_dir, device="cpu")
    with pytest.raises(ValueError, match="already holds checkpoints; resume or use a new run_dir"):
        train(tiny_config(), toy_dataset(), run_dir, device="cpu", resume=False)


def test_tick_log_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="stylegan.training.loop"):
        train(tiny_config(kimg=0.004, aug="noaug"), toy_dataset(), tmp_path, device="cpu")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("tick 0"))
    for part in ("kimg 0.0", "s/kimg", "img/s", "G ", "D ", "R1 ", "PL ", "mem ", "eta "):
        assert part in line
    assert "p 0.000" in line  # no augmentation: reported as 0, as NVIDIA's Progress/augment


class NaNAfter(nn.Module):
    """A discriminator that starts answering NaN after ``calls`` calls, as a diverging one would."""

    def __init__(self, D: nn.Module, calls: int) -> None:
        super().__init__()
        self.D, self.calls = D, calls

    def forward(self, img, c, update_emas=False):
        self.calls -= 1
        logits = self.D(img, c)
        return logits * math.nan if self.calls < 0 else logits


def test_divergence_stops_within_a_tick_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(kimg=1, aug="noaug")
    G, D = build_networks(config, img_channels=3, c_dim=0)
    # D is called 4 times in minibatch 0 and 3 times in the next ones: call 11 is in the tick of images 12-20.
    with pytest.raises(
        TrainingDiverged, match=r"between kimg 0\.012 and 0\.020: non-finite .*in phase Dmain"
    ):
        train(config, toy_dataset(), tmp_path, device="cpu", G=G, D=NaNAfter(D, calls=10))
    checkpoints = CheckpointManager(tmp_path / "checkpoints").paths()
    assert [p.name for p in checkpoints] == ["checkpoint-000000000012.pt"]
    state = load_plain(checkpoints[0])
    assert all(bool(torch.isfinite(t).all()) for t in state["D"].values() if t.is_floating_point())


def test_conditional_training_and_given_networks(tmp_path):
    config = tiny_config(kimg=0.004, aug="fixed", aug_p=0.5)
    G, D = build_networks(config, img_channels=3, c_dim=3)
    reports = []
    summary = train(config, toy_dataset(num_classes=3), tmp_path, device="cpu", G=G, D=D,
                    progress_callback=reports.append)  # fmt: skip
    assert summary.G is G and summary.D is D and summary.G_ema is not G
    assert reports[0].metrics["augment_p"] == 0.5  # fixed p
    with pytest.raises(ValueError, match=r"G.c_dim=3 does not fit the dataset \(c_dim=0\)"):
        train(config, toy_dataset(), tmp_path / "other", device="cpu", G=G, D=D)


def test_the_job_size_must_match_the_config(tmp_path):
    with pytest.raises(ValueError, match="config.gpus=2 but the job runs 1 process"):
        train(resolve_config("auto", 16, 2, {**TINY, "batch_gpu": 2}), toy_dataset(), tmp_path, device="cpu")
    with pytest.raises(ValueError, match="config.resolution=32 but the dataset has 16 px"):
        train(resolve_config("auto", 32, 1, TINY), toy_dataset(), tmp_path, device="cpu")


def test_a_sharded_stream_resumes_at_the_image_it_stopped_at(tmp_path):
    """Stopped mid-epoch and resumed (with another number of loader workers), training on shards ends
    bit-identical to an uninterrupted run: the reader restarts at the next image of its stream."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": None})
    prepare_shards(tmp_path, rows, tmp_path / "shards", resolution=16, shard_size=4, workers=1)

    def shards() -> ShardDataset:  # 20 images per epoch with mirrors: 0.036 kimg crosses two epochs
        return ShardDataset(tmp_path / "shards", seed=0, xflip=True, infinite=True, shuffle_buffer=6)

    config = tiny_config(kimg=0.036)
    train(dataclasses.replace(config, kimg=0.012), shards(), tmp_path / "resumed", device="cpu")
    resumed = train(config, shards(), tmp_path / "resumed", device="cpu", num_workers=2)
    straight = train(config, shards(), tmp_path / "straight", device="cpu")
    assert resumed.resumed_from.name == "checkpoint-000000000012.pt" and resumed.cur_nimg == 36
    _assert_same_checkpoint(load_plain(resumed.last_checkpoint), load_plain(straight.last_checkpoint))
