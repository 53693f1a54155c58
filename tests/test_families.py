"""The model-family seam: registry, configs per family, and files written before families existed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan.archs import FAMILY_NAMES, MissingWSpaceError, get_family, has_w_space
from stylegan.generate import Sampler
from stylegan.serialization import load_network, read_file_metadata, save_network
from stylegan.training import CheckpointManager, resolve_config, train
from stylegan.training.configs import build_networks
from stylegan.training.data import TensorImageDataset

TINY_SG2 = dict(
    batch=4, batch_gpu=4, kimg=0.008, channel_base=256, channel_max=16, z_dim=16, w_dim=16, map=1,
    num_fp16_res=0, tick_kimg=0.004, snapshot_kimg=0.004, sample_seeds=[0], aug="noaug",
)  # fmt: skip


def test_every_family_is_registered_under_its_name():
    for name in ("stylegan2", "progan", "stylegan1"):
        assert name in FAMILY_NAMES and get_family(name).name == name
    assert get_family("progan").has_w_space is False and get_family("stylegan1").progressive
    with pytest.raises(ValueError, match="unknown model family 'stylegan9'"):
        get_family("stylegan9")


@pytest.mark.parametrize(
    ("arch", "cfg"), [("stylegan2", "auto"), ("progan", "paper"), ("stylegan1", "seed000")]
)
def test_each_family_builds_networks_at_the_data_resolution(arch, cfg):
    overrides = {"z_dim": 16, "channel_base": 256, "channel_max": 16}
    config = resolve_config(cfg, 16, 1, overrides, arch=arch)
    G, D = build_networks(config, img_channels=1, c_dim=2)
    assert (G.img_resolution, G.img_channels, G.c_dim, D.c_dim) == (16, 1, 2, 2)
    assert has_w_space(G) == get_family(arch).has_w_space


def test_stylegan2_run_keys_are_unchanged_by_the_seam():
    """A StyleGAN2 config's identity has no family fields, so workspaces keep resuming their runs."""
    identity = resolve_config("auto", 16, 1, TINY_SG2).identity()
    assert "arch" not in identity and "arch_options" not in identity
    assert resolve_config("paper", 16, 1, {}, arch="progan").identity()["arch"] == "progan"


def test_a_checkpoint_written_before_families_resumes(tmp_path):
    config = resolve_config("auto", 16, 1, TINY_SG2)
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    first = train(config, TensorImageDataset(images), tmp_path, device="cpu")
    manager = CheckpointManager(tmp_path / "checkpoints")
    path, state = manager.load_latest()
    del state["config"]["arch"], state["config"]["arch_options"]  # as the code before the seam wrote it
    state["pl_mean"] = state.pop("loss")["pl_mean"]
    torch.save(state, path)
    longer = resolve_config("auto", 16, 1, {**TINY_SG2, "kimg": 0.012})
    resumed = train(longer, TensorImageDataset(images), tmp_path, device="cpu")
    assert resumed.resumed_from == path and resumed.cur_nimg == first.cur_nimg + 4


def test_network_files_name_their_family_and_sg2_files_without_it_still_load(tmp_path):
    config = resolve_config("paper", 8, 1, {"z_dim": 8, "channel_base": 64, "channel_max": 8}, arch="progan")
    G, _ = build_networks(config, img_channels=3, c_dim=0)
    save_network(tmp_path / "G.safetensors", G, extra_metadata={"family": "progan"})
    assert read_file_metadata(tmp_path / "G.safetensors")["family"] == "progan"
    assert type(load_network(tmp_path / "G.safetensors")).__name__ == "ProGANGenerator"
    G2, _ = build_networks(resolve_config("auto", 8, 1, TINY_SG2), img_channels=3, c_dim=0)
    save_network(tmp_path / "old.safetensors", G2)  # no extra metadata, as before
    assert "family" not in read_file_metadata(tmp_path / "old.safetensors")
    assert load_network(tmp_path / "old.safetensors").z_dim == 16


def test_a_generator_without_w_space_samples_in_z_and_refuses_truncation(tmp_path):
    config = resolve_config("paper", 8, 1, {"z_dim": 8, "channel_base": 64, "channel_max": 8}, arch="progan")
    G, _ = build_networks(config, img_channels=3, c_dim=0)
    sampler = Sampler(G)
    images = sampler.generate([0, 1, 2])
    assert images.shape == (3, 8, 8, 3) and images.dtype.name == "uint8"
    direct = G(sampler.latents([1]), torch.zeros(1, 0))
    assert torch.equal(
        torch.from_numpy(images[1:2]).permute(0, 3, 1, 2),
        (direct * 127.5 + 128).clamp(0, 255).to(torch.uint8),
    )
    with pytest.raises(MissingWSpaceError, match="truncation.*ProGANGenerator has none"):
        sampler.generate([0], psi=0.7)
    with pytest.raises(MissingWSpaceError, match="ProGANGenerator"):
        sampler.style_mixing_grid([0], [1])
    path = sampler.interpolate([0, 1], tmp_path / "walk.gif", frames_per_transition=2)
    assert path.is_file()


def test_stylegan3_presets_follow_the_official_train_py():
    t = resolve_config("stylegan3-t", 256, 1, {}, arch="stylegan3")
    r = resolve_config("stylegan3-r", 256, 1, {}, arch="stylegan3", arch_options={"config": "r"})
    assert (t.batch, t.gamma, t.lr_g, t.lr_d, t.mapping_layers, t.ema_kimg) == (32, 2.0, 0.0025, 0.002, 2, 10)
    assert (t.pl_weight, t.pl_interval, t.style_mixing_prob, t.r1_interval) == (0, None, 0, 16)
    assert (t.channel_base, t.channel_max, r.channel_base, r.channel_max) == (32768, 512, 65536, 1024)
    with pytest.raises(ValueError, match="cfg='stylegan3-r' is the preset of config 'r'"):
        resolve_config("stylegan3-r", 256, 1, {}, arch="stylegan3", arch_options={"config": "t"})


def test_stylegan3_blur_fades_out_over_its_kimg_as_a_normalised_power_of_two_gaussian():
    family = get_family("stylegan3")
    small = {"z_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8, "num_fp16_res": 0}
    config = resolve_config("stylegan3-r", 16, 1, small, arch="stylegan3", arch_options={"config": "r"})
    G, D = family.build_networks(config, img_channels=1, c_dim=0)
    loss = family.build_loss(config, G, D, augment_pipe=None, schedule=family.schedule(config))
    fade_nimg = 32 * 200 / 32 * 1000
    assert (
        loss.blur_sigma(0) == 10 and loss.blur_sigma(fade_nimg / 2) == 5 and loss.blur_sigma(fade_nimg) == 0
    )
    from stylegan.losses import gaussian_blur

    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1
    taps = 2.0 ** -((torch.arange(-1, 2.0) / 0.5) ** 2)  # sigma 0.5: radius floor(1.5) = 1
    expected = torch.outer(taps, taps) / taps.sum() ** 2
    assert torch.allclose(gaussian_blur(img, 0.5)[0, 0, 3:6, 3:6], expected, atol=1e-7)
    assert torch.equal(gaussian_blur(img, 0.3), img)  # radius 0: no blur


@pytest.mark.slow
def test_stylegan3_trains_through_the_seam(tmp_path):
    overrides = {
        "z_dim": 8, "w_dim": 8, "channel_base": 128, "channel_max": 16, "num_fp16_res": 0, "batch": 4,
        "batch_gpu": 4, "kimg": 0.008, "tick_kimg": 0.004, "snapshot_kimg": 0.008, "sample_seeds": [0],
        "aug": "noaug",
    }  # fmt: skip
    config = resolve_config(
        "stylegan3-t", 16, 1, overrides, arch="stylegan3", arch_options={"blur_init_sigma": 2}
    )
    images = (torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    reports = []
    summary = train(
        config, TensorImageDataset(images), tmp_path, device="cpu", progress_callback=reports.append
    )
    assert type(summary.G_ema).__name__ == "StyleGAN3Generator" and summary.cur_nimg == 8
    assert all(torch.isfinite(torch.tensor(r.metrics["loss_D"])) for r in reports)
    assert "pl_penalty" not in reports[-1].metrics  # no path length regularisation in the preset


def test_stylegan3_input_moves_and_other_generators_say_they_cannot():
    small = {"z_dim": 8, "w_dim": 8, "channel_base": 128, "channel_max": 16, "num_fp16_res": 0}
    config = resolve_config("stylegan3-t", 16, 1, small, arch="stylegan3")
    G, _ = build_networks(config, img_channels=3, c_dim=0)
    sampler = Sampler(G)
    before = G.synthesis.input.transform.clone()
    frames = sampler.input_transform_frames(0, frames=4, max_translate=0.25, max_rotate=0)
    assert frames.shape == (4, 16, 16, 3) and torch.equal(G.synthesis.input.transform, before)
    # Frame 0 translates by (0.25, 0): the image the transform's inverse produces, as NVIDIA's tools set it.
    G.synthesis.input.transform.copy_(torch.tensor([[1, 0, -0.25], [0, 1, 0], [0, 0, 1.0]]))
    direct = sampler.synthesize(sampler.map(sampler.latents([0])))
    assert np.array_equal(frames[0], direct[0]) and not np.array_equal(frames[0], frames[2])
    sg2, _ = build_networks(resolve_config("auto", 16, 1, TINY_SG2), img_channels=3, c_dim=0)
    with pytest.raises(ValueError, match="StyleGAN3 generators only"):
        Sampler(sg2).input_transform_frames(0)


def test_input_video_cli_writes_the_moving_input_of_stylegan3_and_refuses_stylegan2(tmp_path, capsys):
    from stylegan.__main__ import main

    small = {"z_dim": 8, "w_dim": 8, "channel_base": 128, "channel_max": 16, "num_fp16_res": 0}
    G, _ = build_networks(resolve_config("stylegan3-r", 16, 1, small, arch="stylegan3",
                                         arch_options={"config": "r"}), img_channels=3, c_dim=0)  # fmt: skip
    save_network(tmp_path / "sg3.safetensors", G)
    main(["input-video", "--network", str(tmp_path / "sg3.safetensors"), "--seed", "1", "--frames", "3",
          "--out", str(tmp_path / "moving.gif")])  # fmt: skip
    import PIL.Image

    with PIL.Image.open(tmp_path / "moving.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (16, 16)
    sg2, _ = build_networks(resolve_config("auto", 16, 1, TINY_SG2), img_channels=3, c_dim=0)
    save_network(tmp_path / "sg2.safetensors", sg2)
    with pytest.raises(SystemExit) as exit_info:
        main(["input-video", "--network", str(tmp_path / "sg2.safetensors"), "--seed", "1",
              "--out", str(tmp_path / "no.gif")])  # fmt: skip
    assert exit_info.value.code == 2 and "StyleGAN3 generators only" in capsys.readouterr().err
