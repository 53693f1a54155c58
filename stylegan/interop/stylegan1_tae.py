"""Import of seed 000's StyleGAN v1 (t-ae/style-gan-pytorch ``network.py``), with exact outputs.

t-ae's networks are built from the ``network`` section of its ``settings.json`` and a label count;
its ``train_gan.py`` saves each network's plain ``state_dict()`` with ``torch.save``
(``weights/<step>_lv<level>/gen.pth``, ``gs.pth`` and ``disc.pth``; ``gs.pth`` repeats ``gen.pth``:
it saves the generator, not its running average). Its layers map onto ours one to
one (``blocks.0`` of the generator is our ``synthesis.b4``; ``from_rgbs.0`` / ``blocks.0`` of the
discriminator are our ``b<img_resolution>``); 1x1 convolutions on ``[N, C, 1, 1]`` latents become
dense layers. What is derived from the configuration is checked, not copied: the equalized-lr
``scale`` buffers and blur filters. The ``level`` buffers (training progress) are ignored: our networks
take the resolution per call.

t-ae's architecture is fixed at 4 -> 256 px, with min(4096 // res, 256) feature maps, a 7-layer mapping
network and 3 colour channels; resolution and colour channels are read from the state dict, so a
variant of other depth or channels loads as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan.networks_stylegan1 import (
    EqualizedLinear,
    StyleGAN1Discriminator,
    StyleGAN1Generator,
)

StateDict = Mapping[str, np.ndarray | torch.Tensor]

# t-ae's fixed architecture.
CHANNEL_BASE = 4096
CHANNEL_MAX = 256
MAPPING_LAYERS = 7
W_AVG_BETA = 0.995

_REQUIRED_SETTINGS = (
    "z_dim",
    "w_dim",
    "epsilon",
    "normalize_latents",
    "upsample_mode",
    "use_labels",
    "use_blur",
    "use_noise",
)
_TO_RGB = "synthesis_module.to_rgbs."


@dataclass(frozen=True)
class _Entry:
    """One key of t-ae's state dict: its shape, our key (None: not copied) and, for derived values,
    what it must hold (None: anything)."""

    shape: tuple[int, ...]
    ours: str | None = None
    expected: torch.Tensor | None = None


class _KeyMap:
    """The expected t-ae state dict of one of our networks."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.our_shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        self.entries: dict[str, _Entry] = {}

    def param(self, tae: str, ours: str, shape: tuple[int, ...] | None = None) -> None:
        self.entries[tae] = _Entry(shape or self.our_shapes[ours], ours)

    def derived(self, tae: str, value: torch.Tensor) -> None:
        self.entries[tae] = _Entry(tuple(value.shape), expected=value)

    def layer(self, tae: str, ours: str) -> None:
        """An equalized-lr layer: t-ae's WSConv2d (weight, bias and its runtime ``scale``)."""
        layer = self.module.get_submodule(ours)
        weight_shape = self.our_shapes[f"{ours}.weight"]
        if isinstance(layer, EqualizedLinear):  # t-ae: a 1x1 convolution
            weight_shape = (*weight_shape, 1, 1)
        self.param(f"{tae}.weight", f"{ours}.weight", weight_shape)
        self.param(f"{tae}.bias", f"{ours}.bias")
        self.derived(f"{tae}.scale", torch.tensor(layer.weight_gain, dtype=torch.float64))


def _check_settings(settings: Mapping[str, Any]) -> None:
    missing = [k for k in _REQUIRED_SETTINGS if k not in settings]
    if missing:
        raise ValueError(f"t-ae network settings lack keys {missing}")


def _read_state(state: StateDict | str | os.PathLike[str], what: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict as CPU tensors, and a name for it in messages."""
    source = f"t-ae {what} state dict"
    if isinstance(state, (str, os.PathLike)):
        source = f"{source} {Path(state)}"
        state = torch.load(state, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: expected a mapping of names to arrays, got {type(state).__name__}")
    tensors = {}
    for k, v in state.items():
        if not isinstance(v, (torch.Tensor, np.ndarray)):
            raise ValueError(f"{source}: {k} is a {type(v).__name__}, not an array")
        tensors[k] = v.detach().cpu() if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))
    return tensors, source


def _image_size(g_state: Mapping[str, torch.Tensor], source: str) -> tuple[int, int]:
    """``(img_resolution, img_channels)`` of a t-ae generator, from its toRGB layers."""
    levels = [int(k[len(_TO_RGB) :].split(".")[0]) for k in g_state if k.startswith(_TO_RGB)]
    first = g_state.get(f"{_TO_RGB}0.weight")
    if not levels or first is None or first.ndim != 4:
        raise ValueError(f"{source}: no {_TO_RGB}<level>.weight entries; not a t-ae generator")
    return 4 * 2 ** max(levels), first.shape[0]


def _generator_keys(G: StyleGAN1Generator) -> _KeyMap:
    keys = _KeyMap(G)
    keys.param("w_average", "mapping.w_avg", (1, G.w_dim, 1, 1))
    if G.c_dim > 0:
        keys.param("latent_transform.label_embed.weight", "mapping.embed")
    for idx in range(G.mapping.num_layers):
        keys.layer(f"latent_transform.latent_transform.{2 * idx}", f"mapping.fc{idx}")
    keys.entries["synthesis_module.level"] = _Entry(())

    for level, res in enumerate(G.synthesis.block_resolutions):
        tae, ours = f"synthesis_module.blocks.{level}", f"synthesis.b{res}"
        block = G.synthesis.get_submodule(f"b{res}")
        channels = block.conv1.weight.shape[0]
        if level == 0:
            keys.param(f"{tae}.base_image", f"{ours}.const", (1, channels, res, res))
            keys.layer(f"{tae}.conv", f"{ours}.conv1")
        else:
            keys.layer(f"{tae}.conv1", f"{ours}.conv0")
            keys.layer(f"{tae}.conv2", f"{ours}.conv1")
            if block.blur is not None:
                keys.derived(f"{tae}.blur.filter", block.blur.filter)
        for idx in range(2):
            tae_noise, tae_adain = f"{tae}.noise{idx + 1}", f"{tae}.adain{idx + 1}"
            if block.use_noise:
                keys.param(
                    f"{tae_noise}.noise_scale", f"{ours}.noise{idx}.noise_strength", (1, channels, 1, 1)
                )
                keys.param(f"{tae_noise}.fixed_noise", f"{ours}.noise{idx}.noise_const", (1, 1, res, res))
            else:  # t-ae's intent without noise: strengths fixed at zero
                keys.derived(f"{tae_noise}.noise_scale", torch.zeros([1, channels, 1, 1]))
                keys.entries[f"{tae_noise}.fixed_noise"] = _Entry((1, 1, res, res))
            keys.layer(f"{tae_adain}.scale_transform", f"{ours}.adain{idx}.affine_scale")
            keys.layer(f"{tae_adain}.bias_transform", f"{ours}.adain{idx}.affine_bias")
        keys.layer(f"synthesis_module.to_rgbs.{level}", f"{ours}.torgb")
    return keys


def _discriminator_keys(D: StyleGAN1Discriminator) -> _KeyMap:
    keys = _KeyMap(D)
    keys.entries["level"] = _Entry(())
    for idx, res in enumerate(D.block_resolutions):
        block = D.get_submodule(f"b{res}")
        keys.layer(f"from_rgbs.{idx}", f"b{res}.fromrgb")
        keys.layer(f"blocks.{idx}.conv1", f"b{res}.conv0")
        keys.layer(f"blocks.{idx}.conv2", f"b{res}.conv1")
        if res == D.start_resolution:
            keys.layer(f"blocks.{idx}.conv3", f"b{res}.out")
        elif block.blur is not None:
            keys.derived(f"blocks.{idx}.blur.filter", block.blur.filter)
    return keys


def _load(keys: _KeyMap, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Check ``state`` against ``keys`` (ValueError listing every problem) and load it."""
    missing = sorted(set(keys.entries) - set(state))
    unexpected = sorted(set(state) - set(keys.entries))
    bad_shapes = [
        f"{k}: expected {e.shape}, got {tuple(state[k].shape)}"
        for k, e in keys.entries.items()
        if k in state and tuple(state[k].shape) != e.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if bad_shapes:
        problems.append(f"shape mismatches {bad_shapes}")
    if problems:
        raise ValueError(f"{source} does not fit {type(keys.module).__name__}: " + "; ".join(problems))

    ours = {}
    for k, entry in keys.entries.items():
        expected = entry.expected
        if expected is not None and not torch.allclose(state[k].double(), expected.double()):
            raise ValueError(f"{source}: {k} differs from the value its configuration implies")
        if entry.ours is not None:
            ours[entry.ours] = state[k].to(torch.float32).reshape(keys.our_shapes[entry.ours])
    keys.module.load_state_dict(ours)


def load_stylegan1_tae(
    g_state: StateDict | str | os.PathLike[str],
    d_state: StateDict | str | os.PathLike[str],
    settings: Mapping[str, Any],
    label_size: int,
) -> tuple[StyleGAN1Generator, StyleGAN1Discriminator]:
    """Build our ``(G, D)`` from t-ae's ``Generator`` / ``Discriminator`` state dicts; both in eval mode.

    ``g_state`` and ``d_state`` are mappings of names to arrays or tensors, or paths of files saved by
    ``torch.save(net.state_dict(), path)`` as t-ae's training does. ``settings`` is the ``network``
    section of t-ae's ``settings.json``; ``label_size`` is its number of labels. With ``use_labels``
    the networks take one-hot labels ``c`` ``[N, label_size]`` (t-ae takes label indices), otherwise
    ``c_dim`` is 0. ``style_mixing_prob`` is a matter of training; ``base_image_init`` becomes
    ``const_init``. Raises ValueError on settings or state dicts that do not fit each other.

    t-ae's generator truncates in eval mode (psi 0.8 from the 9th w on; current PyTorch refuses its
    in-place write). Ours truncates only when asked, and ``truncation_cutoff`` counts from the first w.
    """
    _check_settings(settings)
    g_tensors, g_source = _read_state(g_state, "generator")
    d_tensors, d_source = _read_state(d_state, "discriminator")
    img_resolution, img_channels = _image_size(g_tensors, g_source)
    common = dict(
        c_dim=label_size if settings["use_labels"] else 0,
        img_resolution=img_resolution,
        img_channels=img_channels,
        channel_base=CHANNEL_BASE,
        channel_max=CHANNEL_MAX,
        use_blur=settings["use_blur"],
    )
    G = StyleGAN1Generator(
        z_dim=settings["z_dim"],
        w_dim=settings["w_dim"],
        mapping_layers=MAPPING_LAYERS,
        normalize_latents=settings["normalize_latents"],
        latent_epsilon=settings["epsilon"],
        w_avg_beta=W_AVG_BETA,
        upsample_mode=settings["upsample_mode"],
        use_noise=settings["use_noise"],
        const_init=settings.get("base_image_init", "one_normal"),
        **common,
    )
    D = StyleGAN1Discriminator(downsample_mode=settings["upsample_mode"], **common)
    _load(_generator_keys(G), g_tensors, g_source)
    _load(_discriminator_keys(D), d_tensors, d_source)
    return G.eval(), D.eval()
