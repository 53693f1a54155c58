"""Import of NVIDIA StyleGAN3 generators by state dict, and from the reference ``.npz`` format.

Our parameter and buffer names equal the official ones (:mod:`stylegan.networks_stylegan3`), so the
import is a checked copy. The low-pass filter buffers are derived from the configuration; a file's
filters must agree with the ones the configuration designs, which catches a configuration that
does not describe the weights (e.g. another ``first_cutoff``) instead of rendering wrong images.

In the npz format, ``meta_json['G']`` holds the generator's constructor arguments plus ``config``
(``"t"`` or ``"r"``) and ``num_ws``; config R implies ``conv_kernel=1, use_radial_filters=True``.
The files hold no discriminator (StyleGAN3 trains with StyleGAN2's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stylegan.interop.stylegan2_npz import ArrayLike, official_state_dict_to_ours
from stylegan.networks_stylegan3 import StyleGAN3Generator

CONFIGS = {"t": {}, "r": {"conv_kernel": 1, "use_radial_filters": True}}
"""What each StyleGAN3 config sets beyond the generator defaults (besides channel counts)."""

# A tolerance for float32 filter taps designed by another numpy/scipy build.
_FILTER_ATOL = 1e-6


def is_stylegan3_meta(meta: Mapping[str, Any]) -> bool:
    """Whether a reference npz's ``meta_json`` describes a StyleGAN3 generator."""
    return isinstance(meta, Mapping) and isinstance(meta.get("G"), Mapping) and "config" in meta["G"]


def stylegan3_kwargs_from_meta(meta: Mapping[str, Any], where: str = "meta_json['G']") -> dict[str, Any]:
    """:class:`StyleGAN3Generator` arguments from the npz format's ``G`` section."""
    kwargs = dict(meta)
    config = kwargs.pop("config")
    kwargs.pop("num_ws", None)
    if config not in CONFIGS:
        raise ValueError(f"{where}: unknown StyleGAN3 config {config!r}; expected one of {sorted(CONFIGS)}")
    return {**CONFIGS[config], **kwargs}


def stylegan3_generator_from_official(
    state_dict: Mapping[str, ArrayLike], init_kwargs: Mapping[str, Any], source: str = "generator"
) -> StyleGAN3Generator:
    """Build a :class:`StyleGAN3Generator` from NVIDIA's ``init_kwargs`` and load its state dict.

    Raises ValueError when the arguments do not fit, keys or shapes differ, or the file's low-pass
    filters are not the ones its configuration designs. Returned in eval mode.
    """
    try:
        G = StyleGAN3Generator(**init_kwargs)
    except TypeError as e:
        raise ValueError(f"{source}: init_kwargs do not fit StyleGAN3Generator: {e}") from None
    tensors = official_state_dict_to_ours(G, state_dict, source)
    designed = G.state_dict()
    for name, value in tensors.items():
        if name.endswith(("up_filter", "down_filter")):
            err = (value - designed[name]).abs().max().item()
            if err > _FILTER_ATOL:
                raise ValueError(
                    f"{source}: {name} differs from the filter its configuration designs (max abs "
                    f"difference {err:.2e}); the configuration does not describe these weights"
                )
    G.load_state_dict(tensors)
    return G.eval()


def stylegan3_generator_from_npz(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], source: str
) -> StyleGAN3Generator:
    """The generator of a StyleGAN3 reference npz, given its parsed ``meta_json`` and its arrays."""
    kwargs = stylegan3_kwargs_from_meta(meta["G"], where=f"{source}: meta_json['G']")
    state_dict = {k[2:]: v for k, v in arrays.items() if k.startswith("G/")}
    G = stylegan3_generator_from_official(state_dict, kwargs, source=f"{source} (G/)")
    num_ws = meta["G"].get("num_ws", G.num_ws)
    if num_ws != G.num_ws:
        raise ValueError(f"{source}: meta_json['G']['num_ws'] is {num_ws}, the network has {G.num_ws}")
    return G
