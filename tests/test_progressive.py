"""Progressive growing (ProGAN, StyleGAN v1): the schedule, WGAN-GP, and training through the seam."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylegan.archs import get_family
from stylegan.losses import ProgressiveLoss, gradient_penalty
from stylegan.training import resolve_config, train
from stylegan.training.data import TensorImageDataset
from stylegan.training.schedule import ProgressiveSchedule

TINY = dict(
    kimg=0.064, batch=4, z_dim=16, channel_base=256, channel_max=16, tick_kimg=0.016, snapshot_kimg=0.016,
    sample_seeds=[0, 1], aug="noaug", ema_kimg=0.01,
)  # fmt: skip
GROWTH = dict(start_resolution=4, fade_kimg=0.016, stable_kimg=0.008, batch_schedule={4: 8, 8: 4, 16: 4})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dataset(n: int = 24, num_classes: int = 0) -> TensorImageDataset:
    images = (torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % num_classes if num_classes else None, num_classes)


def schedule(**kw) -> ProgressiveSchedule:
    args = dict(
        start_resolution=4, final_resolution=32, fade_nimg=100, stable_nimg=50, batch={4: 8, 8: 4},
        default_batch=2, lr_g={32: 0.5}, lr_d={}, default_lr_g=0.1, default_lr_d=0.2,
    )  # fmt: skip
    return ProgressiveSchedule(**{**args, **kw})


def test_schedule_grows_fades_and_stabilises():
    s = schedule()
    # 4 px stable for 50 images, then per doubling: 100 fading + 50 stable; 32 px stays.
    expect = {
        0: (4, 1.0, 0), 49: (4, 1.0, 0), 50: (8, 0.0, 1), 100: (8, 0.5, 1), 150: (8, 1.0, 2),
        199: (8, 1.0, 2),
        200: (16, 0.0, 3), 275: (16, 0.75, 3), 350: (32, 0.0, 5), 449: (32, 0.99, 5), 450: (32, 1.0, 6),
        10_000: (32, 1.0, 6),
    }  # fmt: skip
    for nimg, (res, alpha, segment) in expect.items():
        state = s.at(nimg)
        assert (state.resolution, state.alpha, state.segment) == (res, pytest.approx(alpha), segment), nimg
    assert [s.at(n).batch for n in (0, 60, 200, 400)] == [8, 4, 2, 2]
    assert (s.at(0).lr_g, s.at(400).lr_g, s.at(400).lr_d) == (0.1, 0.5, 0.2)
    assert s.boundaries_nimg() == [50, 200, 350]
    assert s.at(120).network_kwargs == {"resolution": 8, "alpha": pytest.approx(0.7)}


def test_real_images_follow_the_schedule():
    s = schedule()
    img = torch.randn(2, 3, 32, 32)
    at8 = F.avg_pool2d(img, 4)
    assert torch.allclose(s.prepare_reals(img, s.at(150)), at8)  # 8 px, stable
    faded = s.prepare_reals(img, s.at(75))  # 8 px, alpha 0.25
    coarse = F.interpolate(F.avg_pool2d(img, 8), scale_factor=2, mode="nearest")
    assert torch.allclose(faded, 0.75 * coarse + 0.25 * at8, atol=1e-6)


class Quadratic(torch.nn.Module):
    """D(x) = sum(w * x^2) per image: its input gradient is 2 w x, so the penalty has a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.1, 1.0, 3 * 4 * 4).reshape(1, 3, 4, 4))

    def forward(self, x, c, alpha=1.0):
        return (self.w * x.square()).sum(dim=[1, 2, 3])[:, None]


def test_gradient_penalty_matches_the_closed_form():
    D = Quadratic()
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    eps = torch.rand(5)
    got = gradient_penalty(D, real, fake, torch.zeros(5, 0), eps, target=1.0)
    x_hat = real + eps.reshape(-1, 1, 1, 1) * (fake - real)
    norms = (2 * D.w * x_hat).flatten(1).norm(dim=1)
    assert torch.allclose(got, (norms - 1).square(), rtol=1e-5)


def test_wgan_gp_discriminator_loss_with_drift_matches_a_direct_computation():
    torch.manual_seed(0)
    config = resolve_config("paper", 4, 1, dict(TINY), arch="progan", arch_options=GROWTH)
    family = get_family("progan")
    G, D = family.build_networks(config, img_channels=3, c_dim=0)
    loss = family.build_loss(config, G, D, augment_pipe=None, schedule=family.schedule(config))
    assert isinstance(loss, ProgressiveLoss)
    real, z = torch.rand(4, 3, 4, 4) * 2 - 1, torch.randn(4, 16)
    c = torch.zeros(4, 0)
    D.requires_grad_(True)
    torch.manual_seed(1)
    stats = loss.accumulate_gradients("Dboth", real, c, z, c, gain=1.0, cur_nimg=0)
    grads = [p.grad.clone() for p in D.parameters()]

    # The same loss written out by hand, with the same epsilon draw.
    D.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with torch.no_grad():
        fake = G(z, c)
    eps = torch.rand(4)
    d_fake, d_real = D(fake, c), D(real, c)
    gp = gradient_penalty(D, real, fake, c, eps)
    direct = (d_fake - d_real + 10.0 * gp[:, None] + 1e-3 * d_real.square()).mean()
    direct.backward()
    assert torch.allclose(stats["loss_D"].mean(), direct.detach(), rtol=1e-5)
    assert torch.allclose(stats["drift"], d_real.detach().square().flatten(), rtol=1e-5)
    for got, want in zip(grads, (p.grad for p in D.parameters()), strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, cfg, extra", [("progan", "paper", {}), ("stylegan1", "seed000", {"w_dim": 16})]
)
def test_a_progressive_run_grows_to_the_data_resolution(tmp_path, arch, cfg, extra):
    config = resolve_config(cfg, 16, 1, {**TINY, **extra}, arch=arch, arch_options=GROWTH)
    reports = []
    summary = train(config, dataset(), tmp_path, device="cpu", progress_callback=reports.append)
    # 8 images at 4 px, 16 fading to 8 px, 8 stable, then 16 px: 16 fading, the rest stable.
    seen = [(r.metrics["resolution"], round(r.metrics["alpha"], 3)) for r in reports]
    assert seen[0] == (4, 1.0) and seen[-1] == (16, 1.0)
    assert any(res == 8 and 0 < alpha < 1 for res, alpha in seen)
    assert all(math.isfinite(r.metrics["loss_D"]) for r in reports)
    assert summary.cur_nimg == 64 and summary.G_ema.img_resolution == 16
    assert reports[-1].samples.size == (32, 16)  # two full-resolution samples side by side


@pytest.mark.slow
def test_resume_in_the_middle_of_a_fade_in_is_bit_identical(tmp_path):
    options = dict(GROWTH, reset_optimizer=True)
    short = resolve_config("paper", 16, 1, {**TINY, "kimg": 0.016}, arch="progan", arch_options=options)
    full = resolve_config("paper", 16, 1, TINY, arch="progan", arch_options=options)
    first = train(short, dataset(), tmp_path / "resumed", device="cpu")
    state = get_family("progan").schedule(full).at(first.cur_nimg)
    assert state.resolution == 8 and 0 < state.alpha < 1  # stopped mid fade-in
    resumed = train(full, dataset(), tmp_path / "resumed", device="cpu")
    straight = train(full, dataset(), tmp_path / "straight", device="cpu")
    assert resumed.resumed_from is not None
    for name, tensor in resumed.G_ema.state_dict().items():
        assert torch.equal(tensor, straight.G_ema.state_dict()[name]), name
    for name, tensor in resumed.D.state_dict().items():
        assert torch.equal(tensor, straight.D.state_dict()[name]), name


def test_stylegan1_trains_its_mapping_network_at_a_hundredth_of_the_lr():
    config = resolve_config("seed000", 16, 1, {**TINY, "w_dim": 16}, arch="stylegan1", arch_options=GROWTH)
    family = get_family("stylegan1")
    G, _ = family.build_networks(config, img_channels=3, c_dim=0)
    groups = family.param_groups(config, "G", G)
    assert groups[0]["lr_scale"] == 0.01
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in G.mapping.parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(G.parameters()))


def test_families_refuse_settings_they_do_not_use():
    with pytest.raises(ValueError, match="progan does not use pl_weight"):
        resolve_config("paper", 16, 1, {**TINY, "pl_weight": 2}, arch="progan")
    with pytest.raises(ValueError, match="unknown progan options: fade"):
        resolve_config("paper", 16, 1, TINY, arch="progan", arch_options={"fade": 3})
    with pytest.raises(ValueError, match="start_resolution=32 is above the data resolution 16"):
        resolve_config("paper", 16, 1, TINY, arch="progan", arch_options={"start_resolution": 32})
    with pytest.raises(ValueError, match="objective"):
        resolve_config("paper", 16, 1, TINY, arch="progan", arch_options={"objective": "hinge"})
