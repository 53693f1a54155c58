"""StyleGAN2 losses against closed forms on tiny networks whose derivatives are known."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stylegan.augment import AugmentPipe
from stylegan.losses import StyleGAN2Loss, lazy_regularization_adam

Z_DIM, NUM_WS, RES = 3, 4, 2


class LinearGenerator(nn.Module):
    """mapping: ws[:, i] = A z with A = I; synthesis: img = sum_i B_i ws[:, i], so d img / d ws_i = B_i."""

    def __init__(self) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.eye(Z_DIM))
        self.B = nn.Parameter(
            torch.randn(NUM_WS, 3 * RES * RES, Z_DIM, generator=torch.Generator().manual_seed(1))
        )

    def mapping(self, z, c, update_emas=False):
        return (z @ self.A.T)[:, None, :].repeat(1, NUM_WS, 1)

    def synthesis(self, ws, update_emas=False):
        return torch.einsum("ipk,nik->np", self.B, ws).reshape(-1, 3, RES, RES)


class LinearDiscriminator(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w for every image."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3 * RES * RES, generator=torch.Generator().manual_seed(2)))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, img, c, update_emas=False):
        return (img.flatten(1) @ self.w + self.b)[:, None]


class QuadraticDiscriminator(nn.Module):
    """D(x) = x^T M x / 2: its input gradient is S x with S = (M + M^T) / 2."""

    def __init__(self) -> None:
        super().__init__()
        self.M = nn.Parameter(
            torch.randn(3 * RES * RES, 3 * RES * RES, generator=torch.Generator().manual_seed(3))
        )

    def forward(self, img, c, update_emas=False):
        x = img.flatten(1)
        return (0.5 * ((x @ self.M) * x).sum(dim=1))[:, None]


def _batch(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, RES, RES, generator=g) * 2 - 1
    z = torch.randn(n, Z_DIM, generator=g)
    c = torch.zeros(n, 0)
    return real, c, z, c


# --- lazy regularisation hyper-parameters --------------------------------------------------------------


def test_lazy_regularization_adjusts_lr_and_betas_as_the_paper():
    lr, betas = lazy_regularization_adam(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17)
    assert betas[0] == 0.0
    assert betas[1] == pytest.approx(math.exp(16 / 17 * math.log(0.99)))  # 0.990588...
    assert betas[1] == pytest.approx(0.9905855, abs=1e-7)
    lr, betas = lazy_regularization_adam(0.002, (0.5, 0.99), 4)
    assert lr == pytest.approx(0.0016) and betas == pytest.approx((0.5**0.8, 0.99**0.8))
    assert lazy_regularization_adam(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    assert lazy_regularization_adam(0.002, (0.0, 0.99), 0) == (0.002, (0.0, 0.99))


# --- discriminator -------------------------------------------------------------------------------------


def test_r1_with_linear_d_is_gamma_times_w():
    G, D = LinearGenerator(), LinearDiscriminator()
    loss = StyleGAN2Loss(G, D, r1_gamma=5.0, style_mixing_prob=0)
    stats = loss.accumulate_gradients("Dreg", *_batch(), gain=16)
    w = D.w.detach()
    # Penalty per image: |grad_x D|^2 = |w|^2; d/dw of mean(gamma / 2 |w|^2) * gain = gamma * gain * w.
    torch.testing.assert_close(stats["r1_penalty"], w.square().sum().expand(6))
    torch.testing.assert_close(D.w.grad, 5.0 * 16 * w)
    assert D.b.grad is None or float(D.b.grad) == 0
    assert G.B.grad is None


def test_r1_with_quadratic_d_matches_the_closed_form_gradient():
    G, D = LinearGenerator(), QuadraticDiscriminator()
    gamma = 0.7
    real, real_c, z, c = _batch()
    loss = StyleGAN2Loss(G, D, r1_gamma=gamma, style_mixing_prob=0)
    stats = loss.accumulate_gradients("Dreg", real, real_c, z, c, gain=1)
    x = real.flatten(1).double()
    M = D.M.detach().double()
    S = (M + M.T) / 2
    sx = x @ S  # rows: S x_n
    torch.testing.assert_close(stats["r1_penalty"].double(), sx.square().sum(dim=1), rtol=1e-5, atol=1e-5)
    # d/dM |S x|^2 = (S x) x^T + x (S x)^T; averaged over the batch and scaled by gamma / 2.
    expected = gamma / 2 * (sx.T @ x + x.T @ sx) / x.shape[0]
    torch.testing.assert_close(D.M.grad.double(), expected, rtol=1e-4, atol=1e-5)


def test_dmain_is_the_logistic_loss_on_reals_and_fakes():
    G, D = LinearGenerator(), LinearDiscriminator()
    real, real_c, z, c = _batch()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0)
    stats = loss.accumulate_gradients("Dmain", real, real_c, z, c, gain=1)
    fake = torch.einsum("ipk,nk->np", G.B.detach(), z)
    w, b = D.w.detach(), D.b.detach()
    real_logits, fake_logits = real.flatten(1) @ w + b, fake @ w + b
    torch.testing.assert_close(stats["loss_D"], F.softplus(fake_logits) + F.softplus(-real_logits))
    torch.testing.assert_close(stats["scores_real"], real_logits)
    # d/dw [softplus(<w, f> + b) + softplus(-<w, r> - b)] = sigmoid(D(f)) f - sigmoid(-D(r)) r
    expected_w = torch.sigmoid(fake_logits)[:, None] * fake - torch.sigmoid(-real_logits)[
        :, None
    ] * real.flatten(1)
    torch.testing.assert_close(D.w.grad, expected_w.mean(dim=0), rtol=1e-5, atol=1e-6)
    assert "r1_penalty" not in stats


def test_dboth_adds_r1_to_the_main_loss():
    real, real_c, z, c = _batch()
    grads = {}
    for phases in (["Dmain", "Dreg"], ["Dboth"]):
        G, D = LinearGenerator(), LinearDiscriminator()
        loss = StyleGAN2Loss(G, D, r1_gamma=3.0, style_mixing_prob=0)
        for phase in phases:
            loss.accumulate_gradients(phase, real, real_c, z, c, gain=1)
        grads[len(phases)] = D.w.grad.clone()
    torch.testing.assert_close(grads[1], grads[2])


# --- generator -----------------------------------------------------------------------------------------


def test_gmain_is_the_non_saturating_loss():
    G, D = LinearGenerator(), LinearDiscriminator()
    real, real_c, z, c = _batch()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0)
    stats = loss.accumulate_gradients("Gmain", real, real_c, z, c, gain=2)
    w, b = D.w.detach(), D.b.detach()
    fake_logits = torch.einsum("ipk,nk->np", G.B.detach(), z) @ w + b
    torch.testing.assert_close(stats["loss_G"], F.softplus(-fake_logits))
    # d/dB_i softplus(-<w, sum_i B_i z> - b) = -sigmoid(-D) w z^T for every i.
    per_image = -torch.sigmoid(-fake_logits)[:, None, None] * w[None, :, None] * z[:, None, :]
    torch.testing.assert_close(
        G.B.grad, 2 * per_image.mean(dim=0).expand(NUM_WS, -1, -1), rtol=1e-5, atol=1e-6
    )


def test_path_length_with_a_linear_generator():
    G, D = LinearGenerator(), LinearDiscriminator()
    real, real_c, z, c = _batch(n=8)
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01)
    loss.pl_mean.fill_(0.5)
    torch.manual_seed(123)
    stats = loss.accumulate_gradients("Greg", real, real_c, z, c, gain=4)

    # Closed form: the Jacobian of the image w.r.t. ws_i is B_i, whatever the latent.
    torch.manual_seed(123)
    y = torch.randn(4, 3, RES, RES).flatten(1) / RES  # the noise the loss draws for the shrunk batch
    B = G.B.detach().double().requires_grad_(True)
    lengths = torch.einsum("ipk,np->nik", B, y.double()).square().sum(dim=2).mean(dim=1).sqrt()
    pl_mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    penalty = (lengths - pl_mean).square()
    (penalty.mean() * 2.0 * 4).backward()

    assert stats["pl_penalty"].shape == (4,)  # pl_batch_shrink halves the batch
    torch.testing.assert_close(stats["pl_penalty"].double(), penalty.detach(), rtol=1e-5, atol=1e-7)
    assert float(loss.pl_mean) == pytest.approx(float(pl_mean.detach()), rel=1e-6)
    torch.testing.assert_close(G.B.grad.double(), B.grad, rtol=1e-4, atol=1e-6)


def test_gboth_runs_main_and_path_length():
    real, real_c, z, c = _batch()
    G, D = LinearGenerator(), LinearDiscriminator()
    stats = StyleGAN2Loss(G, D, style_mixing_prob=0).accumulate_gradients("Gboth", real, real_c, z, c, gain=1)
    assert {"loss_G", "pl_penalty"} <= set(stats)
    stats = StyleGAN2Loss(G, D, pl_weight=0).accumulate_gradients("Greg", real, real_c, z, c, gain=1)
    assert stats == {}


def test_style_mixing_takes_a_random_cutoff_from_a_second_latent():
    G, D = LinearGenerator(), LinearDiscriminator()
    real, real_c, z, c = _batch()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=1.0)
    own = G.mapping(z, c)
    cutoffs = set()
    for seed in range(40):
        torch.manual_seed(seed)
        _, ws = loss.run_G(z, c)
        same = (ws == own).all(dim=2).all(dim=0)  # per ws index
        cutoff = int(same.sum())
        assert bool(same[:cutoff].all()) and not bool(same[cutoff:].any())
        cutoffs.add(cutoff)
    assert cutoffs == set(range(1, NUM_WS))
    _, ws = StyleGAN2Loss(G, D, style_mixing_prob=0).run_G(z, c)
    torch.testing.assert_close(ws, own)


def test_augmentation_is_applied_before_d():
    G, D = LinearGenerator(), LinearDiscriminator()
    pipe = AugmentPipe(brightness=1)
    pipe.p.fill_(1)
    real, real_c, _, _ = _batch()
    loss = StyleGAN2Loss(G, D, augment_pipe=pipe)
    assert not torch.allclose(loss.run_D(real, real_c), D(real, real_c))


def test_unknown_phase_is_rejected():
    loss = StyleGAN2Loss(LinearGenerator(), LinearDiscriminator())
    with pytest.raises(ValueError, match="unknown phase 'Greq'"):
        loss.accumulate_gradients("Greq", *_batch(), gain=1)
