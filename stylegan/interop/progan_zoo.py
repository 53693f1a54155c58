"""Import of facebookresearch/pytorch_GAN_zoo's ProGAN (``GNet``/``DNet``) with exact outputs.

Inputs: the two networks' state dicts (``{name: tensor or array}``), or a checkpoint file of the zoo.
``ProgressiveGAN.save`` writes ``torch.save({'config': BaseConfig, 'netG': ..., 'netD': ..., 'avgG': ...})``
(plus ``'tmp'`` with ``saveTrainTmp``), where ``BaseConfig`` is a plain attribute holder of class
``models.utils.config.BaseConfig``. The file is read with ``torch.load(weights_only=True)``, allowing
that one class name, mapped onto an inert stand-in: nothing from the file is executed.

The architecture follows from the shapes: the latent size (``formatLayer``), the depth of every scale,
the output channels (``toRGBLayers``), minibatch stddev (one input channel more in D's 4x4 conv) and the
decision layer size. That size is ``1 + categoryVectorDim``: with AC-GAN the zoo appends the one-hot
attribute codes to G's latent and D outputs one class logit per code, so ``c_dim = size - 1`` and
``z_dim = latent size - c_dim`` (see :mod:`stylegan.networks_progan`). What shapes cannot tell, leaky
ReLU slope, equalized learning rate and the output activation (tanh for the zoo's 'MSE' and 'DCGAN'
losses), comes from the checkpoint's config, else from keyword arguments, else the zoo's defaults.

Alpha: the zoo's ``alpha`` weighs the old, upsampled path, ours the newest block: ours = 1 - zoo's
(a checkpoint's ``config.alpha`` included). The imported discriminator keeps the zoo's quirk of not
blending at 8x8 (``fade_in_at_8=False``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan.networks_progan import ProGANDiscriminator, ProGANGenerator

ArrayLike = np.ndarray | torch.Tensor
StateDict = Mapping[str, ArrayLike]
# Losses whose generator ends with tanh (the zoo's ``generationActivation``); the others end linearly.
_TANH_LOSSES = ("MSE", "DCGAN")


class _ZooConfig:
    """Stands in for the zoo's ``models.utils.config.BaseConfig``, a bare attribute holder, in unpickling."""


def read_zoo_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a pytorch_GAN_zoo checkpoint with ``weights_only=True``; its ``config`` becomes a plain dict."""
    with torch.serialization.safe_globals([(_ZooConfig, "models.utils.config.BaseConfig")]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "netG" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a pytorch_GAN_zoo checkpoint (no 'netG'; found {keys})")
    return checkpoint


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return dict(config) if isinstance(config, Mapping) else vars(config)


def _zoo_key(name: str) -> str:
    """The zoo's current parameter name for ``name``, which may carry nn.DataParallel's ``module.`` prefix
    or lack the ``.module`` of the zoo's older files (as the zoo's own ``loadStateDictCompatible`` allows)."""
    name = name.removeprefix("module.")
    return re.sub(r"(?<!\.module)\.(weight|bias)$", r".module.\1", name)


def _float_state(state: StateDict, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{what}: expected a state dict (name -> tensor or array), got {type(state).__name__}"
        )
    out = {}
    for name, value in state.items():
        tensor = value.detach() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        out[_zoo_key(name)] = tensor.to(device="cpu", dtype=torch.float32)
    return out


def _shape(state: dict[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{what}: not a pytorch_GAN_zoo state dict, {key!r} is missing")
    return tuple(state[key].shape)


def _depths(state: dict[str, torch.Tensor], depth0: int) -> list[int]:
    """Feature maps per resolution, from 4x4: ``depth0``, then the output size of each scale's first conv."""
    depths = [depth0]
    while (key := f"scaleLayers.{len(depths) - 1}.0.module.weight") in state:
        depths.append(state[key].shape[0])
    return depths


def _generator_names(resolutions: list[int]) -> dict[str, str]:
    """Our layer names -> the zoo's ``GNet`` layer names."""
    names = {"dense": "formatLayer", "b4.conv": "groupScale0.0", "b4.torgb": "toRGBLayers.0"}
    for idx, res in enumerate(resolutions[1:]):
        names |= {
            f"b{res}.conv0": f"scaleLayers.{idx}.0",
            f"b{res}.conv1": f"scaleLayers.{idx}.1",
            f"b{res}.torgb": f"toRGBLayers.{idx + 1}",
        }
    return names


def _discriminator_names(resolutions: list[int]) -> dict[str, str]:
    """Our layer names -> the zoo's ``DNet`` layer names."""
    names = {
        "b4.fromrgb": "fromRGBLayers.0",
        "b4.conv": "groupScaleZero.0",
        "b4.fc": "groupScaleZero.1",
        "b4.out": "decisionLayer",
    }
    for idx, res in enumerate(resolutions[1:]):
        names |= {
            f"b{res}.fromrgb": f"fromRGBLayers.{idx + 1}",
            f"b{res}.conv0": f"scaleLayers.{idx}.0",
            f"b{res}.conv1": f"scaleLayers.{idx}.1",
        }
    return names


def _load_zoo_state(
    module: nn.Module, names: dict[str, str], state: dict[str, torch.Tensor], what: str
) -> None:
    """Copy ``state`` into ``module``; every zoo parameter must be there with its shape, and nothing else."""
    expected = {}
    for ours, param in module.state_dict().items():
        layer, _, leaf = ours.rpartition(".")
        expected[f"{names[layer]}.module.{leaf}"] = (ours, param.shape)
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [
        f"{key}: shape {list(state[key].shape)}, expected {list(shape)}"
        for key, (_, shape) in expected.items()
        if key in state and state[key].shape != shape
    ]
    if problems:
        raise ValueError(f"{what} does not fit the architecture its shapes imply: " + "; ".join(problems))
    module.load_state_dict({ours: state[key] for key, (ours, _) in expected.items()})


def load_progan_zoo(
    g_state: StateDict | str | os.PathLike[str],
    d_state: StateDict | None = None,
    *,
    average_generator: bool = False,
    lrelu_slope: float | None = None,
    equalized_lr: bool | None = None,
    output_activation: str | None = None,
) -> tuple[ProGANGenerator, ProGANDiscriminator]:
    """Build ``(G, D)`` from the zoo's ``GNet`` and ``DNet`` state dicts, or from a zoo checkpoint.

    ``g_state`` is a state dict, a checkpoint dict or a checkpoint path; with a checkpoint, ``d_state``
    defaults to its ``netD`` and ``average_generator=True`` takes its moving-average generator ``avgG``
    (the one the zoo samples from) instead of ``netG``. ``lrelu_slope``, ``equalized_lr`` and
    ``output_activation`` override the checkpoint's config (defaults: 0.2, True, 'linear').
    Raises ValueError when the weights do not form a zoo network.
    """
    checkpoint: dict[str, Any] = {}
    if isinstance(g_state, (str, os.PathLike)):
        checkpoint = read_zoo_checkpoint(g_state)
    elif isinstance(g_state, Mapping) and "netG" in g_state:
        checkpoint = dict(g_state)
    if checkpoint:
        g_state = checkpoint["avgG" if average_generator else "netG"]
        d_state = checkpoint.get("netD") if d_state is None else d_state
    elif average_generator:
        raise ValueError("average_generator needs a zoo checkpoint (with 'avgG'), not a bare state dict")
    if d_state is None:
        raise ValueError("load_progan_zoo needs the discriminator's state dict (or a zoo checkpoint)")
    config = _config_dict(checkpoint.get("config"))
    if config.get("perChannelNormalization") is False:
        raise ValueError(
            "the zoo's GNet cannot run without perChannelNormalization (it then fails in forward)"
        )

    g = _float_state(g_state, "GNet state dict")
    d = _float_state(d_state, "DNet state dict")
    latent_size = _shape(g, "formatLayer.module.weight", "GNet state dict")[1]
    g_depths = _depths(g, _shape(g, "groupScale0.0.module.weight", "GNet state dict")[0])
    img_channels = _shape(g, "toRGBLayers.0.module.weight", "GNet state dict")[0]
    d_depth0, d_conv_in = _shape(d, "groupScaleZero.0.module.weight", "DNet state dict")[:2]
    d_depths = _depths(d, d_depth0)
    d_channels = _shape(d, "fromRGBLayers.0.module.weight", "DNet state dict")[1]
    c_dim = _shape(d, "decisionLayer.module.weight", "DNet state dict")[0] - 1
    if latent_size <= c_dim:
        raise ValueError(
            f"GNet latent size {latent_size} leaves no room for the noise next to the {c_dim} class codes "
            "that DNet's decision layer implies"
        )

    common = dict(
        lrelu_slope=config.get("leakyReluLeak", 0.2) if lrelu_slope is None else lrelu_slope,
        equalized_lr=config.get("equalizedlR", True) if equalized_lr is None else equalized_lr,
    )
    if output_activation is None:
        output_activation = "tanh" if config.get("lossCriterion") in _TANH_LOSSES else "linear"
    G = ProGANGenerator(
        z_dim=latent_size - c_dim,
        c_dim=c_dim,
        img_resolution=4 * 2 ** (len(g_depths) - 1),
        img_channels=img_channels,
        channels=g_depths,
        pixel_norm=True,
        output_activation=output_activation,
        **common,
    )
    D = ProGANDiscriminator(
        c_dim=c_dim,
        img_resolution=4 * 2 ** (len(d_depths) - 1),
        img_channels=d_channels,
        channels=d_depths,
        mbstd_group_size=4 if d_conv_in == d_depth0 + 1 else None,
        fade_in_at_8=False,
        **common,
    )
    _load_zoo_state(G, _generator_names(G.resolutions), g, "GNet state dict")
    _load_zoo_state(D, _discriminator_names(D.resolutions), d, "DNet state dict")
    return G.eval(), D.eval()
