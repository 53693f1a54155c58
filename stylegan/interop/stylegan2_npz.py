"""Import and export of NVIDIA StyleGAN2-ADA networks by state dict.

Our parameter and buffer names equal the official ones, so conversion is a checked copy:
every key must be present with the right shape, and no unknown key may be left over.

Two interchange forms are supported:

- an official state dict (``{name: tensor}``, e.g. ``G_ema.state_dict()`` saved from the official code)
  plus the official ``init_kwargs`` dict of the network: :func:`generator_from_official` and
  :func:`discriminator_from_official`;
- the reference ``.npz`` file: arrays under ``G/<name>`` and ``D/<name>`` and the configuration as
  JSON bytes in ``meta_json`` (keys ``G`` and ``D``): :func:`load_official_npz` / :func:`save_official_npz`.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan.files import atomic_open
from stylegan.layers import MappingNetwork
from stylegan.networks_stylegan2 import (
    Discriminator,
    DiscriminatorEpilogue,
    Generator,
    SynthesisBlock,
    SynthesisNetwork,
)

ArrayLike = np.ndarray | torch.Tensor

# Keys of the reference format's meta_json and the matching constructor arguments.
_G_META_KEYS = (
    "z_dim",
    "w_dim",
    "c_dim",
    "img_resolution",
    "img_channels",
    "mapping_layers",
    "channel_base",
    "channel_max",
    "conv_clamp",
    "architecture",
    "num_ws",
    "lr_multiplier_mapping",
    "w_avg_beta",
)
_D_META_KEYS = (
    "c_dim",
    "img_resolution",
    "channel_base",
    "channel_max",
    "conv_clamp",
    "architecture",
    "mbstd_group_size",
    "mbstd_num_channels",
)
# Settings that change how a network is trained or executed, but not the function it computes;
# the npz format does not carry them, so they are dropped on export.
_EXECUTION_ONLY = ("num_fp16_res", "fp16_channels_last", "freeze_layers")


def official_state_dict_to_ours(
    module: nn.Module, state_dict: Mapping[str, ArrayLike], source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Check an official state dict against ``module`` and convert it to float32 tensors.

    Raises ValueError listing missing keys, unexpected keys and shape mismatches (``source`` names
    where the dict came from in the message). FIR filter buffers must match the module's configured
    filter: they are derived from the configuration, not learned.
    """
    expected = module.state_dict()
    tensors = {
        k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
        for k, v in state_dict.items()
    }
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    bad_shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(tensors[k].shape)}"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if bad_shapes:
        problems.append(f"shape mismatches {bad_shapes}")
    if problems:
        raise ValueError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    converted = {k: tensors[k].detach().to(device="cpu", dtype=expected[k].dtype) for k in expected}
    for k, v in converted.items():
        if k.endswith("resample_filter") and not torch.equal(v, expected[k].cpu()):
            raise ValueError(f"{source}: {k} differs from the configured FIR filter")
    return converted


def export_official_state_dict(module: nn.Module) -> dict[str, np.ndarray]:
    """The official state dict of ``module`` as float32 numpy arrays (same names, contiguous)."""
    return {k: v.detach().cpu().contiguous().numpy().copy() for k, v in module.state_dict().items()}


def _load_checked(module: nn.Module, state_dict: Mapping[str, ArrayLike], source: str) -> None:
    module.load_state_dict(official_state_dict_to_ours(module, state_dict, source))


def _build(cls: type[nn.Module], init_kwargs: Mapping[str, Any], source: str) -> nn.Module:
    kwargs = dict(init_kwargs)
    class_name = kwargs.pop("class_name", None)
    if class_name is not None and not class_name.endswith(f".{cls.__name__}"):
        raise ValueError(f"{source}: class_name {class_name!r} is not a {cls.__name__}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{source}: init_kwargs do not fit {cls.__name__}: {e}") from None


def generator_from_official(
    state_dict: Mapping[str, ArrayLike], init_kwargs: Mapping[str, Any], source: str = "generator"
) -> Generator:
    """Build a :class:`Generator` from an official ``init_kwargs`` dict and load its state dict.

    ``init_kwargs`` is what NVIDIA's code records for the network (z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, synthesis_kwargs; a ``class_name`` entry is accepted and checked).
    The network is returned in eval mode with trainable parameters (call ``.train()`` to fine-tune).
    """
    G = _build(Generator, init_kwargs, source)
    _load_checked(G, state_dict, source)
    return G.eval()


def discriminator_from_official(
    state_dict: Mapping[str, ArrayLike], init_kwargs: Mapping[str, Any], source: str = "discriminator"
) -> Discriminator:
    """Build a :class:`Discriminator` from an official ``init_kwargs`` dict and load its state dict."""
    D = _build(Discriminator, init_kwargs, source)
    _load_checked(D, state_dict, source)
    return D.eval()


# --------------------------------------------------------------------------------------------------
# The reference .npz format


def _require(meta: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ValueError(f"{where} lacks keys {missing}")


def generator_kwargs_from_meta(meta: Mapping[str, Any], where: str = "meta_json['G']") -> dict[str, Any]:
    """Constructor arguments of :class:`Generator` from the npz format's ``G`` config."""
    _require(meta, _G_META_KEYS, where)
    return dict(
        z_dim=meta["z_dim"],
        c_dim=meta["c_dim"],
        w_dim=meta["w_dim"],
        img_resolution=meta["img_resolution"],
        img_channels=meta["img_channels"],
        mapping_kwargs=dict(
            num_layers=meta["mapping_layers"],
            lr_multiplier=meta["lr_multiplier_mapping"],
            w_avg_beta=meta["w_avg_beta"],
        ),
        synthesis_kwargs=dict(
            channel_base=meta["channel_base"],
            channel_max=meta["channel_max"],
            conv_clamp=meta["conv_clamp"],
            architecture=meta["architecture"],
        ),
    )


def discriminator_kwargs_from_meta(
    meta: Mapping[str, Any], img_channels: int, where: str = "meta_json['D']"
) -> dict[str, Any]:
    """Constructor arguments of :class:`Discriminator` from the npz format's ``D`` config.

    The format keeps ``img_channels`` only with the generator (``D`` may override it).
    """
    _require(meta, _D_META_KEYS, where)
    return dict(
        c_dim=meta["c_dim"],
        img_resolution=meta["img_resolution"],
        img_channels=meta.get("img_channels", img_channels),
        architecture=meta["architecture"],
        channel_base=meta["channel_base"],
        channel_max=meta["channel_max"],
        conv_clamp=meta["conv_clamp"],
        epilogue_kwargs=dict(
            mbstd_group_size=meta["mbstd_group_size"], mbstd_num_channels=meta["mbstd_num_channels"]
        ),
    )


def _pop_or_default(kwargs: dict[str, Any], name: str, cls: type) -> Any:
    """``kwargs.pop(name)``, or the default of that argument in ``cls``'s constructor."""
    return kwargs.pop(name, inspect.signature(cls).parameters[name].default)


def _meta_from_generator(G: Generator) -> dict[str, Any]:
    kwargs = G.init_kwargs
    mapping = dict(kwargs["mapping_kwargs"])
    synthesis = dict(kwargs["synthesis_kwargs"])
    meta = dict(
        z_dim=G.z_dim,
        w_dim=G.w_dim,
        c_dim=G.c_dim,
        img_resolution=G.img_resolution,
        img_channels=G.img_channels,
        mapping_layers=_pop_or_default(mapping, "num_layers", MappingNetwork),
        channel_base=_pop_or_default(synthesis, "channel_base", SynthesisNetwork),
        channel_max=_pop_or_default(synthesis, "channel_max", SynthesisNetwork),
        conv_clamp=_pop_or_default(synthesis, "conv_clamp", SynthesisBlock),
        architecture=_pop_or_default(synthesis, "architecture", SynthesisBlock),
        num_ws=G.num_ws,
        lr_multiplier_mapping=_pop_or_default(mapping, "lr_multiplier", MappingNetwork),
        w_avg_beta=_pop_or_default(mapping, "w_avg_beta", MappingNetwork),
    )
    _reject_unrepresentable("G mapping_kwargs", mapping)
    _reject_unrepresentable("G synthesis_kwargs", synthesis)
    return meta


def _meta_from_discriminator(D: Discriminator) -> dict[str, Any]:
    kwargs = dict(D.init_kwargs)
    epilogue = dict(kwargs.pop("epilogue_kwargs"))
    meta = dict(
        c_dim=kwargs.pop("c_dim"),
        img_resolution=kwargs.pop("img_resolution"),
        img_channels=kwargs.pop("img_channels"),
        channel_base=kwargs.pop("channel_base"),
        channel_max=kwargs.pop("channel_max"),
        conv_clamp=kwargs.pop("conv_clamp"),
        architecture=kwargs.pop("architecture"),
        mbstd_group_size=_pop_or_default(epilogue, "mbstd_group_size", DiscriminatorEpilogue),
        mbstd_num_channels=_pop_or_default(epilogue, "mbstd_num_channels", DiscriminatorEpilogue),
    )
    if kwargs.pop("cmap_dim") is not None:
        raise ValueError("the npz format cannot hold a discriminator with a custom cmap_dim")
    _reject_unrepresentable("D block_kwargs", kwargs.pop("block_kwargs"))
    _reject_unrepresentable("D mapping_kwargs", kwargs.pop("mapping_kwargs"))
    _reject_unrepresentable("D epilogue_kwargs", epilogue)
    _reject_unrepresentable("D arguments", kwargs)
    return meta


def _reject_unrepresentable(where: str, leftover: Mapping[str, Any]) -> None:
    unsupported = sorted(k for k in leftover if k not in _EXECUTION_ONLY)
    if unsupported:
        raise ValueError(f"the npz format cannot hold {where} {unsupported}")


def load_official_npz(path: str | os.PathLike[str]) -> tuple[nn.Module, Discriminator | None]:
    """Load ``(G, D)`` from the reference npz format (see module docstring); both in eval mode.

    A StyleGAN3 file (see :mod:`stylegan.interop.stylegan3_npz`) gives a
    :class:`~stylegan.networks_stylegan3.StyleGAN3Generator` and ``D = None``.
    """
    # Imported here: stylegan3_npz builds on this module.
    from stylegan.interop.stylegan3_npz import is_stylegan3_meta, stylegan3_generator_from_npz

    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if "meta_json" not in data.files:
            raise ValueError(f"{path}: no 'meta_json' entry; not an official-network npz")
        try:
            meta = json.loads(bytes(data["meta_json"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: meta_json is not valid JSON: {e}") from None
        arrays = {name: data[name] for name in data.files if name != "meta_json"}
    if is_stylegan3_meta(meta):
        return stylegan3_generator_from_npz(meta, arrays, str(path)), None
    _require(meta, ("G", "D"), f"{path}: meta_json")

    g_kwargs = generator_kwargs_from_meta(meta["G"], where=f"{path}: meta_json['G']")
    d_kwargs = discriminator_kwargs_from_meta(
        meta["D"], g_kwargs["img_channels"], where=f"{path}: meta_json['D']"
    )
    G = generator_from_official(_strip_prefix(arrays, "G/"), g_kwargs, source=f"{path} (G/)")
    if G.num_ws != meta["G"]["num_ws"]:
        raise ValueError(
            f"{path}: meta_json['G']['num_ws'] is {meta['G']['num_ws']}, the network has {G.num_ws}"
        )
    D = discriminator_from_official(_strip_prefix(arrays, "D/"), d_kwargs, source=f"{path} (D/)")
    return G, D


def _strip_prefix(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def save_official_npz(
    path: str | os.PathLike[str],
    G: Generator,
    D: Discriminator,
    extra_arrays: Mapping[str, np.ndarray] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``G`` and ``D`` in the reference npz format (atomically: temp file, then rename).

    ``extra_arrays`` (e.g. ``in/z``, ``out/img``) and ``extra_meta`` (e.g. ``notes``) are stored alongside.
    Raises ValueError for settings the format cannot hold; execution-only settings (num_fp16_res,
    fp16_channels_last, freeze_layers) are dropped.
    """
    d_meta = _meta_from_discriminator(D)
    if d_meta["img_channels"] == G.img_channels:  # the format keeps it with G unless they differ
        del d_meta["img_channels"]
    meta = {"G": _meta_from_generator(G), "D": d_meta, **(extra_meta or {})}
    arrays = {f"G/{k}": v for k, v in export_official_state_dict(G).items()}
    arrays.update({f"D/{k}": v for k, v in export_official_state_dict(D).items()})
    arrays.update(extra_arrays or {})
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
