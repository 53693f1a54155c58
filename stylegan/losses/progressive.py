"""Losses of the progressive families (ProGAN, StyleGAN v1), evaluated at the schedule's resolution.

Objectives, as ``objective``:

- ``wgangp``: WGAN with gradient penalty and drift (ProGAN's, and seed 000's StyleGAN v1):
  ``L_D = D(fake) - D(real) + lambda / target^2 (|grad D(x_hat)| - target)^2 + eps_drift D(real)^2``
  with ``x_hat`` uniformly between a real and a fake image, and ``L_G = -D(fake)``;
- ``logistic``: the non-saturating logistic loss, ``L_D = softplus(D(fake)) + softplus(-D(real))``,
  ``L_G = softplus(-D(fake))``;
- ``logistic_r1``: the same plus ``gamma / 2 |grad D(real)|^2`` (the StyleGAN paper's FFHQ setting).

A discriminator with more outputs than one (ProGAN's AC-GAN conditioning) gives the real/fake score in
column 0 and class logits after it; ``acgan_weight`` times their cross-entropy with the labels is added
to D's loss (real and fake images) and to G's (fake images), as ProGAN's ``cond_weight``.

Both networks train every minibatch (fused phases ``Gboth``/``Dboth``). Real images arrive at the full
resolution and are brought to the current one by the schedule (box filter, blended during fade-in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from stylegan.training.schedule import Schedule, TrainingState

OBJECTIVES = ("wgangp", "logistic", "logistic_r1")


def gradient_penalty(
    D: Any, real: Tensor, fake: Tensor, c: Tensor, epsilon: Tensor, target: float = 1.0, **d_kwargs: Any
) -> Tensor:
    """Per-sample ``(|grad_x D(x_hat)| - target)^2`` at ``x_hat = real + epsilon (fake - real)``."""
    mixed = torch.lerp(real.detach(), fake.detach(), epsilon.reshape(-1, 1, 1, 1)).requires_grad_(True)
    (grads,) = torch.autograd.grad(D(mixed, c, **d_kwargs).sum(), mixed, create_graph=True)
    norms = grads.square().sum(dim=[1, 2, 3]).sqrt()
    return (norms - target).square()


class ProgressiveLoss:
    """Accumulates one phase's gradients at the resolution and alpha the schedule gives for ``cur_nimg``."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        schedule: Schedule,
        objective: str = "wgangp",
        wgan_lambda: float = 10.0,
        wgan_target: float = 1.0,
        epsilon_drift: float = 1e-3,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.0,
        acgan_weight: float = 1.0,
        augment_pipe: nn.Module | None = None,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
        if style_mixing_prob > 0 and not hasattr(G, "mapping"):
            raise ValueError(f"style mixing needs a mapping network; {type(G).__name__} has none")
        self.G, self.D, self.schedule, self.augment_pipe = G, D, schedule, augment_pipe
        self.objective = objective
        self.wgan_lambda, self.wgan_target, self.epsilon_drift = wgan_lambda, wgan_target, epsilon_drift
        self.r1_gamma, self.style_mixing_prob, self.acgan_weight = r1_gamma, style_mixing_prob, acgan_weight

    def phase_intervals(self) -> dict[str, int | None]:
        return {"G": None, "D": None}

    def has_work(self, phase: str) -> bool:
        return True

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if state:
            raise ValueError(f"the progressive loss keeps no state, got {sorted(state)}")

    def run_G(self, z: Tensor, c: Tensor, state: TrainingState, update_emas: bool = False) -> Tensor:
        kwargs = state.network_kwargs
        if not hasattr(self.G, "mapping"):
            return self.G(z, c, **kwargs)
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:  # one random cutoff per batch, as StyleGAN
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            ws = torch.where(torch.arange(num_ws, device=ws.device)[None, :, None] < cutoff, ws, mixed)
        return self.G.synthesis(ws, **kwargs)

    def run_D(self, img: Tensor, c: Tensor, state: TrainingState) -> Tensor:
        """D's real/fake scores ``[N, 1]``; with AC-GAN outputs, plus their class cross-entropy per sample
        as :attr:`last_class_loss`."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        out = self.D(img, c, alpha=state.alpha)
        self.last_class_loss = None
        if out.shape[1] > 1:
            self.last_class_loss = F.cross_entropy(out[:, 1:], c.argmax(dim=1), reduction="none")
        return out[:, :1]

    def _class_term(self) -> Tensor | float:
        if self.last_class_loss is None or self.acgan_weight == 0:
            return 0.0
        return self.last_class_loss[:, None] * self.acgan_weight

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
        if phase not in ("Gboth", "Dboth"):
            raise ValueError(f"the progressive loss runs phases Gboth and Dboth, got {phase!r}")
        state = self.schedule.at(cur_nimg)
        if phase == "Gboth":
            gen_logits = self.run_D(self.run_G(gen_z, gen_c, state), gen_c, state)
            loss_G = -gen_logits if self.objective == "wgangp" else F.softplus(-gen_logits)
            loss_G = loss_G + self._class_term()
            loss_G.mean().mul(gain).backward()
            return {"loss_G": loss_G.detach().flatten(), "scores_fake": gen_logits.detach().flatten()}

        real = self.schedule.prepare_reals(real_img, state).detach()
        with torch.no_grad():
            fake = self.run_G(gen_z, gen_c, state, update_emas=True)
        use_r1 = self.objective == "logistic_r1" and self.r1_gamma != 0
        real.requires_grad_(use_r1)
        gen_logits = self.run_D(fake, gen_c, state)
        class_terms = self._class_term()
        real_logits = self.run_D(real, real_c, state)
        class_terms = class_terms + self._class_term()
        stats: dict[str, Tensor] = {}
        if self.objective == "wgangp":
            epsilon = torch.rand([real.shape[0]], device=real.device, dtype=real.dtype)
            penalty = gradient_penalty(
                lambda x, c: self.run_D(x, c, state), real, fake, real_c, epsilon, self.wgan_target
            )
            drift = real_logits.square()
            loss = (
                gen_logits
                - real_logits
                + penalty.reshape(real_logits.shape) * (self.wgan_lambda / self.wgan_target**2)
                + drift * self.epsilon_drift
            )
            stats["gp_penalty"], stats["drift"] = penalty.detach(), drift.detach().flatten()
        else:
            loss = F.softplus(gen_logits) + F.softplus(-real_logits)
            if use_r1:
                (grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                r1 = grads.square().sum(dim=[1, 2, 3])
                loss = loss + r1.reshape(loss.shape) * (self.r1_gamma / 2)
                stats["r1_penalty"] = r1.detach()
        loss = loss + class_terms
        loss.mean().mul(gain).backward()
        stats.update(
            loss_D=loss.detach().flatten(),
            scores_real=real_logits.detach().flatten(),
            scores_fake=gen_logits.detach().flatten(),
        )
        return stats
