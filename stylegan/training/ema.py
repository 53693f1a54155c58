"""The generator's exponential moving average (G_ema), with the ramp-up of StyleGAN2-ADA."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(cur_nimg: int, batch_size: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Decay per minibatch such that the average has a half-life of ``ema_kimg`` thousand images.

    With ``ema_rampup`` the half-life is at most ``cur_nimg * ema_rampup``, so early in training the
    average follows the generator closely instead of remembering its random initialisation.
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """``G_ema = beta * G_ema + (1 - beta) * G`` for parameters; buffers (e.g. ``w_avg``) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
