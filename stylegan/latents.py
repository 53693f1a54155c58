"""Operations on intermediate latents ``ws`` of shape ``[N, num_ws, w_dim]``."""

from __future__ import annotations

import torch


def truncate(
    ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 1.0, cutoff: int | None = None
) -> torch.Tensor:
    """The truncation trick: move ``ws`` towards ``w_avg`` by ``psi`` (0 = all the way, 1 = unchanged).

    With ``cutoff``, only the first ``cutoff`` layers of ``ws`` ``[N, num_ws, w_dim]`` are truncated.
    ``ws`` may also be ``[N, w_dim]``, in which case ``cutoff`` must be ``None``.
    """
    if psi == 1:
        return ws
    truncated = w_avg.lerp(ws, psi)
    if cutoff is None:
        return truncated
    if ws.ndim != 3:
        raise ValueError(f"truncation_cutoff needs ws of shape [N, num_ws, w_dim], got {tuple(ws.shape)}")
    return torch.cat([truncated[:, :cutoff], ws[:, cutoff:]], dim=1)


def style_mix(ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff_layer: int) -> torch.Tensor:
    """Style mixing: layers ``< cutoff_layer`` from ``ws_a`` (coarse styles), the rest from ``ws_b``.

    Both are ``[N, num_ws, w_dim]``; ``cutoff_layer`` may be 0 (all ``ws_b``) up to ``num_ws`` (all ``ws_a``).
    """
    if ws_a.shape != ws_b.shape or ws_a.ndim != 3:
        raise ValueError(
            f"style_mix needs two ws of equal shape [N, num_ws, w_dim], got {tuple(ws_a.shape)} "
            f"and {tuple(ws_b.shape)}"
        )
    if not 0 <= cutoff_layer <= ws_a.shape[1]:
        raise ValueError(f"cutoff_layer must be in [0, {ws_a.shape[1]}], got {cutoff_layer}")
    return torch.cat([ws_a[:, :cutoff_layer], ws_b[:, cutoff_layer:]], dim=1)
