"""StyleGAN2 losses: non-saturating logistic loss, lazy R1 and path-length regularisation.

StyleGAN3 trains with the same loss plus a Gaussian blur of every image D sees, whose sigma fades from
``blur_init_sigma`` to zero over the first ``blur_fade_kimg`` thousand images (off by default).

Training alternates *phases*. With lazy regularisation, G and D each have a main phase run every
minibatch (``Gmain``, ``Dmain``) and a regularisation phase run every ``interval`` minibatches
(``Greg``, ``Dreg``) whose loss is multiplied by the interval; without it the two are fused into
``Gboth`` / ``Dboth``. :func:`lazy_regularization_adam` gives the matching Adam hyper-parameters.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylegan.ops.fir import filter2d

Phase = Literal["Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth"]
PHASES: tuple[str, ...] = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


def lazy_regularization_adam(
    lr: float, betas: tuple[float, float], interval: int | None
) -> tuple[float, tuple[float, float]]:
    """Adam ``(lr, betas)`` for a main phase that shares its optimiser with a lazy regulariser.

    Running the regulariser every ``interval`` minibatches makes ``interval + 1`` optimiser steps per
    ``interval`` minibatches; scaling ``lr`` by ``r = interval / (interval + 1)`` and raising the betas to
    ``r`` keeps the per-minibatch step size and momentum horizon of the unregularised schedule.
    """
    if not interval:
        return lr, betas
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


class StyleGAN2Loss:
    """Accumulates the gradients of one phase for one minibatch round.

    ``G`` must provide ``mapping(z, c, update_emas=...)`` and ``synthesis(ws, update_emas=...)``; ``D``
    is called as ``D(img, c, update_emas=...)``. Images are float in [-1, 1]. Randomness (style-mixing
    cutoffs and latents, path-length noise, synthesis noise, augmentation) comes from torch's global
    generator on the images' device, so seeding it makes a run reproducible.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        augment_pipe: nn.Module | None = None,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        r1_interval: int | None = 16,
        pl_interval: int | None = 4,
        blur_init_sigma: float = 0.0,
        blur_fade_kimg: float = 0.0,
    ) -> None:
        if pl_batch_shrink < 1:
            raise ValueError(f"pl_batch_shrink must be >= 1, got {pl_batch_shrink}")
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.r1_interval, self.pl_interval = r1_interval, pl_interval
        self.blur_init_sigma, self.blur_fade_kimg = blur_init_sigma, blur_fade_kimg
        device = next(G.parameters()).device
        self.pl_mean = torch.zeros([], device=device)

    def phase_intervals(self) -> dict[str, int | None]:
        return {"G": self.pl_interval, "D": self.r1_interval}

    def has_work(self, phase: str) -> bool:
        """A regularisation phase whose weight is zero is skipped (its lr adjustment stays, as NVIDIA's)."""
        if phase == "Greg":
            return self.pl_weight != 0
        if phase == "Dreg":
            return self.r1_gamma != 0
        return True

    def state_dict(self) -> dict[str, Tensor]:
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.pl_mean.copy_(state["pl_mean"])

    def blur_sigma(self, cur_nimg: int) -> float:
        """StyleGAN3's blur of D's inputs after ``cur_nimg`` images (0 when off)."""
        if self.blur_fade_kimg <= 0:
            return 0.0
        return max(1 - cur_nimg / (self.blur_fade_kimg * 1e3), 0) * self.blur_init_sigma

    def run_G(self, z: Tensor, c: Tensor, update_emas: bool = False) -> tuple[Tensor, Tensor]:
        """Generate images and their ``ws``; with style mixing, one random cutoff per batch."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            keep = torch.arange(num_ws, device=ws.device)[None, :, None] < cutoff
            ws = torch.where(keep, ws, mixed)
        img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def run_D(self, img: Tensor, c: Tensor, update_emas: bool = False, blur_sigma: float = 0.0) -> Tensor:
        img = gaussian_blur(img, blur_sigma)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(
        self,
        phase: str,
        real_img: Tensor,
        real_c: Tensor,
        gen_z: Tensor,
        gen_c: Tensor,
        gain: float,
        cur_nimg: int = 0,
    ) -> dict[str, Tensor]:
        """Backpropagate ``gain`` x the phase's batch-mean loss; return detached per-sample statistics.

        ``cur_nimg`` (images seen so far) sets the blur of D's inputs when the loss has one.

        Statistics, as present in the phase: ``loss_G``, ``loss_D``, ``r1_penalty``, ``pl_penalty`` and
        the logits ``scores_real`` (whose signs drive ADA) and ``scores_fake``.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight != 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
        stats: dict[str, Tensor] = {}
        blur_sigma = self.blur_sigma(cur_nimg)

        if do_Gmain:
            gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
            loss_G = F.softplus(-gen_logits)  # -log(sigmoid(gen_logits))
            loss_G.mean().mul(gain).backward()
            stats["loss_G"] = loss_G.detach().flatten()
            stats["scores_fake"] = gen_logits.detach().flatten()

        if do_Gpl:
            stats["pl_penalty"] = self._path_length(gen_z, gen_c, gain)

        if do_Dmain:
            gen_img, _ = self.run_G(gen_z, gen_c, update_emas=True)
            gen_logits = self.run_D(gen_img, gen_c, update_emas=True, blur_sigma=blur_sigma)
            loss_D_gen = F.softplus(gen_logits)  # -log(1 - sigmoid(gen_logits))
            loss_D_gen.mean().mul(gain).backward()
            stats["scores_fake"] = gen_logits.detach().flatten()

        if do_Dmain or do_Dr1:
            real = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real, real_c, blur_sigma=blur_sigma)
            loss = torch.zeros_like(real_logits)
            if do_Dmain:
                loss_D_real = F.softplus(-real_logits)  # -log(sigmoid(real_logits))
                loss = loss + loss_D_real
                stats["loss_D"] = (loss_D_gen + loss_D_real).detach().flatten()
            if do_Dr1:
                (r1_grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                r1_penalty = r1_grads.square().sum(dim=[1, 2, 3])
                loss = loss + r1_penalty.reshape(loss.shape) * (self.r1_gamma / 2)
                stats["r1_penalty"] = r1_penalty.detach()
            loss.mean().mul(gain).backward()
            stats["scores_real"] = real_logits.detach().flatten()
        return stats

    def _path_length(self, gen_z: Tensor, gen_c: Tensor, gain: float) -> Tensor:
        """Penalise deviation of |J_w^T y| (y ~ N(0, I) / sqrt(H W)) from its running mean."""
        batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch])
        pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
        (pl_grads,) = torch.autograd.grad((gen_img * pl_noise).sum(), gen_ws, create_graph=True)
        pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        (pl_penalty * self.pl_weight).mean().mul(gain).backward()
        return pl_penalty.detach()


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """StyleGAN3's blur: a separable Gaussian (as powers of 2) of radius floor(3 sigma); none below 1/3."""
    radius = math.floor(sigma * 3)
    if radius <= 0:
        return img
    taps = (
        torch.arange(-radius, radius + 1, device=img.device, dtype=torch.float32)
        .div(sigma)
        .square()
        .neg()
        .exp2()
    )
    taps = taps / taps.sum()
    return filter2d(img, torch.outer(taps, taps))
