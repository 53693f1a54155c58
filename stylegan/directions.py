"""Directions in W that change one aspect of an image, and editing ws along them.

Three ways to find them:

- :func:`sefa` (Shen & Zhou 2021, closed-form factorisation): the directions that the style affine layers
  amplify most, read off the weights alone, no sampling;
- :func:`ganspace` (Härkönen et al. 2020): principal components of sampled w;
- :func:`interfacegan` (Shen et al. 2020): the normal of a linear boundary in W between samples that a
  classifier (or the user) labels positive and negative.

Directions are unit vectors ``[w_dim]`` (rows of ``[k, w_dim]``), each with the sign that makes its largest
component positive, so that a name such as ``sefa:0`` means the same vector on every run and machine.
:func:`edit` adds ``strength`` times a direction to chosen layers of ws: strengths are in units of W.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.special
import torch
from torch import nn

from .archs.base import require_w_space
from .generate import StyleGroup, style_layers

__all__ = [
    "Classifier",
    "edit",
    "fit_linear_boundary",
    "ganspace",
    "interfacegan",
    "one_hot_labels",
    "resolve_direction",
    "sample_w",
    "sefa",
    "style_affines",
]

log = logging.getLogger(__name__)

Classifier = Callable[[torch.Tensor], torch.Tensor | np.ndarray]
"""Generator images ``[N, C, H, W]`` (float, in [-1, 1]) -> labels ``[N]``, 1/True for the attribute."""

Layers = StyleGroup | Sequence[int] | None


def _device(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


def _canonical_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Rows flipped so that each one's largest-magnitude component is positive."""
    largest = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))
    return vectors * largest.sign()


def _check_count(num_directions: int, w_dim: int) -> None:
    if not 1 <= num_directions <= w_dim:
        raise ValueError(f"num_directions must be in [1, {w_dim}] (w_dim), got {num_directions}")


# --- sampling -------------------------------------------------------------------------------------


def one_hot_labels(G: nn.Module, class_idx: int | None, n: int, device: torch.device) -> torch.Tensor:
    """Labels ``[n, c_dim]`` of one class for a conditional ``G``; ``[n, 0]`` for an unconditional one."""
    c = torch.zeros([n, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            raise ValueError("the network is unconditional; do not pass a class")
        return c
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise ValueError(f"the network is conditional: pass a class index in [0, {G.c_dim})")
    c[:, class_idx] = 1
    return c


@torch.no_grad()
def sample_w(
    G: nn.Module, num_samples: int, seed: int = 0, class_idx: int | None = None, batch_size: int = 1000
) -> torch.Tensor:
    """``num_samples`` w ``[N, w_dim]`` of z drawn from ``seed`` (untruncated), on ``G``'s device."""
    require_w_space(G, "sampling w")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    device = _device(G)
    z = torch.randn([num_samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    chunks = []
    for batch in z.split(batch_size):
        c = one_hot_labels(G, class_idx, len(batch), device)
        chunks.append(G.mapping(batch.to(device), c)[:, 0].float())
    return torch.cat(chunks)


# --- SeFa -----------------------------------------------------------------------------------------


def style_affines(G: nn.Module) -> list[tuple[str, int, torch.Tensor]]:
    """The affine maps from w to styles in ``G.synthesis``: ``(module name, index of the w it reads, weight
    [out_features, w_dim])`` each, in module order.

    They are the modules named ``affine*`` with a ``[*, w_dim]`` weight (StyleGAN2/3: ``affine`` of every
    synthesis layer and toRGB; StyleGAN v1: ``affine_scale`` and ``affine_bias`` of every AdaIN). Which w
    each reads is found by running the synthesis once on distinct random ws and matching the inputs, so
    no architecture's layer layout is written down here (in StyleGAN2 a toRGB reads the next block's first w).
    """
    require_w_space(G, "SeFa")
    affines = {
        name: module
        for name, module in G.synthesis.named_modules()
        if name.rsplit(".", 1)[-1].startswith("affine")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.ndim == 2
        and module.weight.shape[1] == G.w_dim
    }
    if not affines:
        raise ValueError(f"{type(G).__name__}.synthesis has no affine style layers reading w")
    ws = torch.randn([1, G.num_ws, G.w_dim], generator=torch.Generator().manual_seed(0)).to(_device(G))
    inputs: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            inputs.setdefault(name, args[0].detach()[0].float())

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in affines.items()]
    try:
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")
    finally:
        for handle in handles:
            handle.remove()

    found = []
    for name, module in affines.items():
        seen = inputs.get(name)
        matches = [] if seen is None else [i for i in range(G.num_ws) if torch.allclose(seen, ws[0, i])]
        if len(matches) != 1:
            raise ValueError(f"cannot tell which w the style layer {name} reads")
        found.append((name, matches[0], module.weight.detach()))
    return found


def sefa(G: nn.Module, num_directions: int = 5, layers: Layers = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa: the top eigenvectors of ``A^T A`` and their eigenvalues, ``([k, w_dim], [k])``, descending.

    ``A`` stacks the weights of the style affine layers (:func:`style_affines`) that read the ws of
    ``layers`` (all when None; a style group or ws indices, as :func:`~stylegan.generate.style_layers`),
    one row per style channel, each row scaled to unit length as the SeFa code does (its columns, in its
    ``[w_dim, channels]`` layout): every channel counts the same whatever its layer's weight scale, and the
    per-layer scalar gains of equalised learning rate cancel. The top eigenvector ``d`` maximises
    ``|A d|`` over unit vectors: the direction that moves the styles most.
    """
    require_w_space(G, "SeFa")
    chosen = set(range(G.num_ws) if layers is None else style_layers(layers, G.num_ws))
    _check_count(num_directions, G.w_dim)
    weights = [weight for _, index, weight in style_affines(G) if index in chosen]
    if not weights:
        raise ValueError(f"no style layer reads the ws {sorted(chosen)}")
    A = torch.cat(weights).double().cpu()
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(A.T @ A)  # ascending
    top = values.argsort(descending=True)[:num_directions]
    return _canonical_sign(vectors[:, top].T).float(), values[top].float()


# --- GANSpace -------------------------------------------------------------------------------------


def ganspace(
    G: nn.Module,
    num_directions: int = 5,
    num_samples: int = 20_000,
    seed: int = 0,
    class_idx: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GANSpace: the top principal directions of ``num_samples`` sampled w and the standard deviation of w
    along each, ``([k, w_dim], [k])``, descending (the paper's edits are multiples of these deviations)."""
    require_w_space(G, "GANSpace")
    _check_count(num_directions, G.w_dim)
    if num_samples < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {num_samples}")
    w = sample_w(G, num_samples, seed, class_idx).double().cpu()
    _, singular_values, vh = torch.linalg.svd(w - w.mean(dim=0), full_matrices=False)
    stds = singular_values[:num_directions] / math.sqrt(num_samples - 1)
    return _canonical_sign(vh[:num_directions]).float(), stds.float()


# --- InterFaceGAN ---------------------------------------------------------------------------------


def fit_linear_boundary(
    w: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | Sequence, l2: float = 1e-4
) -> tuple[torch.Tensor, float]:
    """A hyperplane ``normal . w + offset = 0`` separating labels 1 (on the side ``normal`` points to) from 0.

    L2-regularised logistic regression, minimised with L-BFGS (scipy), stands in for InterFaceGAN's linear
    SVM: on separable data its direction tends to the maximum-margin one as ``l2`` goes to 0 (Rosset et al.
    2004), and it needs no extra dependency. The data are centred and scaled by one number before fitting,
    which conditions the problem without changing which directions are perpendicular. Returns the unit
    ``normal`` ``[w_dim]`` (float32) and ``offset`` (the boundary's signed distance from the origin, negated).
    """
    x = np.asarray(torch.as_tensor(w).detach().cpu(), dtype=np.float64)
    y = np.asarray(torch.as_tensor(np.asarray(labels)).cpu())
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"expected w [N, w_dim] and N labels, got {list(x.shape)} and {list(y.shape)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 or booleans")
    sign = np.where(y.astype(bool), 1.0, -1.0)
    if abs(sign.sum()) == len(sign):
        raise ValueError("all samples have the same label; a boundary needs both classes")
    mean = x.mean(axis=0)
    scale = np.sqrt(np.mean((x - mean) ** 2)) or 1.0
    xs = (x - mean) / scale

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = params[:-1], params[-1]
        margin = sign * (xs @ a + b)
        d_margin = -scipy.special.expit(-margin) * sign / len(xs)
        loss = -scipy.special.log_expit(margin).mean() + 0.5 * l2 * a @ a
        return loss, np.append(xs.T @ d_margin + l2 * a, d_margin.sum())

    fit = scipy.optimize.minimize(loss_and_gradient, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    if not fit.success:
        log.warning("the boundary fit did not fully converge: %s", fit.message)
    a, b = fit.x[:-1], fit.x[-1]
    norm = np.linalg.norm(a)
    if norm == 0:
        raise ValueError("the labels show no linear trend in w (the fitted normal is zero)")
    return torch.from_numpy(a / norm).float(), float((b * scale - a @ mean) / norm)


@torch.no_grad()
def _classify(G: nn.Module, w: torch.Tensor, classifier: Classifier, batch_size: int) -> np.ndarray:
    labels = []
    for batch in w.split(batch_size):
        images = G.synthesis(batch[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
        labels.append(np.asarray(torch.as_tensor(classifier(images)).detach().cpu()).reshape(-1))
    return np.concatenate(labels)


def interfacegan(
    G: nn.Module,
    classifier: Classifier | None = None,
    *,
    labels: torch.Tensor | np.ndarray | Sequence | None = None,
    num_samples: int = 10_000,
    seed: int = 0,
    class_idx: int | None = None,
    batch_size: int = 32,
    l2: float = 1e-4,
) -> torch.Tensor:
    """InterFaceGAN: the unit normal ``[w_dim]`` of a linear boundary in W, pointing to the attribute.

    ``num_samples`` w are drawn as :func:`sample_w` draws them (same ``seed``, same w) and labelled either by
    ``classifier`` (:data:`Classifier`, called on their images ``batch_size`` at a time, constant noise) or by
    ``labels`` given in that order, e.g. by hand from images rendered of ``sample_w``'s w. The boundary is
    fitted by :func:`fit_linear_boundary`. Moving ws along the normal (:func:`edit`) adds the attribute.
    """
    if (classifier is None) == (labels is None):
        raise ValueError("pass either a classifier or labels")
    w = sample_w(G, num_samples, seed, class_idx)
    if classifier is not None:
        labels = _classify(G, w, classifier, batch_size)
    normal, _ = fit_linear_boundary(w, labels, l2)
    return normal


# --- editing --------------------------------------------------------------------------------------


def edit(ws: torch.Tensor, direction: torch.Tensor, strength: float, layers: Layers = None) -> torch.Tensor:
    """``ws`` ``[..., num_ws, w_dim]`` moved by ``strength * direction`` in ``layers`` only (all when None; a
    style group name or ws indices, as :func:`~stylegan.generate.style_layers`); a new tensor. The direction
    is used as given (not normalised)."""
    num_ws, w_dim = ws.shape[-2:]
    direction = torch.as_tensor(direction, dtype=ws.dtype, device=ws.device)
    if direction.shape != (w_dim,):
        raise ValueError(f"direction must have shape [{w_dim}] (w_dim), got {list(direction.shape)}")
    chosen = list(range(num_ws)) if layers is None else style_layers(layers, num_ws)
    edited = ws.clone()
    edited[..., chosen, :] += strength * direction
    return edited


def resolve_direction(spec: str | os.PathLike, G: nn.Module, layers: Layers = None) -> torch.Tensor:
    """The direction ``[w_dim]`` a name gives: ``sefa:K`` (the K-th SeFa direction of the style layers of
    ``layers``), ``ganspace:K`` (the K-th principal direction, default sampling) or a ``.npy`` file holding
    one vector (e.g. a saved InterFaceGAN normal), used as stored."""
    method, colon, index = str(spec).partition(":")
    if colon and method in ("sefa", "ganspace"):
        if not index.isdigit():
            raise ValueError(f"bad direction {spec!r}: expected {method}:K with K an integer >= 0")
        k = int(index)
        if method == "sefa":
            return sefa(G, k + 1, layers)[0][k]
        return ganspace(G, k + 1)[0][k]
    path = Path(spec)
    if path.suffix != ".npy":
        raise ValueError(f"bad direction {str(spec)!r}: expected sefa:K, ganspace:K or a .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"direction file not found: {path}")
    vector = np.load(path, allow_pickle=False).astype(np.float32)
    if vector.size != G.w_dim:
        raise ValueError(
            f"{path} holds {list(vector.shape)} values; the network needs one [{G.w_dim}] vector"
        )
    return torch.from_numpy(vector.reshape(G.w_dim))
