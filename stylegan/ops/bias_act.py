"""Bias, activation, gain and clamp as one op: ``clamp(act(x + b) * gain, -clamp, clamp)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylegan.ops.impl import resolve_impl


@dataclass(frozen=True)
class Activation:
    """An activation function with its default shape parameter and variance-preserving gain."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, _: x, 0.0, 1.0),
    "relu": Activation(lambda x, _: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, _: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, _: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, _: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, _: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, _: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, _: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def activation_spec(act: str) -> Activation:
    """Look up an activation by name with a clear error for unknown names."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}") from None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain`` and clamp to ``[-clamp, clamp]``.

    ``alpha`` and ``gain`` default to the activation's own (e.g. 0.2 and sqrt(2) for ``lrelu``);
    ``clamp=None`` disables clamping. Supports gradients of any order.
    """
    spec = activation_spec(act)
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of {tuple(x.shape)}")
        b = b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if resolve_impl(impl) == "fast" and act in _PIECEWISE_LINEAR and gain > 0:
        slope = 1.0 if act == "linear" else 0.0 if act == "relu" else alpha
        return _BiasLeakyReLU.apply(x, b, slope, gain, clamp)
    return _bias_act_ref(x, b, spec, alpha, gain, clamp)


def _bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    spec: Activation,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """One tensor op per step."""
    if b is not None:
        x = x + b
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


class _BiasLeakyReLU(torch.autograd.Function):
    """``clamp(lrelu(x + b) * gain)`` for ``gain > 0`` in one allocation and three passes over memory.

    ``lrelu(v) * gain == lrelu(v * gain)``, so bias and gain fold into one ``add`` and the rest runs in
    place. Only the output is saved: its sign gives the leaky-ReLU slope and ``|y| == clamp`` marks
    clamped elements (whose gradient is zero, as in NVIDIA's CUDA kernel). The backward pass is built
    from differentiable ops of the incoming gradient, so double backward (R1) works.
    """

    @staticmethod
    def forward(ctx, x, b, slope, gain, clamp):
        if b is not None:
            y = torch.add(b * gain, x, alpha=gain)
        elif gain != 1:
            y = x * gain
        else:
            y = x.clone()
        if slope != 1:
            F.leaky_relu_(y, slope)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.slope, ctx.gain, ctx.clamp = slope, gain, clamp
        ctx.bias_shape = None if b is None else b.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        y = y.detach()
        dx = dy
        if ctx.clamp is not None:
            dx = torch.ops.aten.hardtanh_backward(dx, y, -ctx.clamp, ctx.clamp)
        if ctx.slope != 1:
            dx = torch.ops.aten.leaky_relu_backward(dx, y, ctx.slope, True)
        if ctx.gain != 1:
            # In place when dx is our own fresh tensor (the ops above save y, never their result).
            dx = dx.mul_(ctx.gain) if dx is not dy else dx * ctx.gain
        db = None
        if ctx.bias_shape is not None and ctx.needs_input_grad[1]:
            dims = [i for i, size in enumerate(ctx.bias_shape) if size == 1]
            db = dx.sum(dim=dims, keepdim=True)
        return dx, db, None, None, None
