"""Selection between the fast and the reference formulation of the ops.

Every op in :mod:`stylegan.ops` has two formulations that compute the same function:

- ``"fast"`` (default): restructured for speed: FIR resampling without zero stuffing or discarded
  outputs, bias/activation/gain/clamp in one autograd function with in-place passes, demodulation
  from a matmul, 1x1 convolutions as matmuls, and on CPU channels-last feature maps (see
  :func:`activation_memory_format`).
- ``"ref"``: the straightforward formulation (zero insertion + depthwise convolution for FIR
  filtering, one tensor op per step for bias/activation), the same structure as NVIDIA's pure
  PyTorch fallback. Tests use it as the independent check of the fast path and benchmarks as
  their baseline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

IMPLS = ("fast", "ref")
_current = "fast"


def current_impl() -> str:
    """The formulation ops use when called with ``impl=None``."""
    return _current


def resolve_impl(impl: str | None) -> str:
    """Return ``impl`` validated, or the current default when it is ``None``."""
    if impl is None:
        return _current
    if impl not in IMPLS:
        raise ValueError(f"unknown ops implementation {impl!r}; expected one of {IMPLS}")
    return impl


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Run the enclosed code with ``impl`` as the default formulation of every op."""
    global _current
    previous = _current
    _current = resolve_impl(impl)
    try:
        yield
    finally:
        _current = previous


def activation_memory_format(channels_last: bool, device: torch.device) -> torch.memory_format:
    """Memory format for a block's feature maps.

    ``channels_last`` is the network's own request (NVIDIA's ``fp16_channels_last``). The fast
    formulation also uses it on CPU: oneDNN's NHWC convolutions read and write the tensors as they
    are, while NCHW tensors are reordered to a blocked layout and back at every convolution.
    """
    if channels_last or (_current == "fast" and device.type == "cpu"):
        return torch.channels_last
    return torch.contiguous_format
