"""StyleGAN3 (Karras et al. 2021): alias-free generator (configs T and R), StyleGAN2's discriminator.

Presets (``train.cfg``) follow NVlabs/stylegan3 ``train.py`` and ``docs/configs.md``:

- ``stylegan3-t`` (``model.config: t``) and ``stylegan3-r`` (``model.config: r``): batch 32, R1 gamma
  by resolution as the recommended configurations (0.5 at 128 px, 2 at 256, 8 at 512, 32 at 1024:
  ``0.5 (res / 128)^2``), lr 0.0025 for G and 0.002 for D, EMA half-life ``batch * 10 / 32`` kimg with
  ramp-up 0.05, a 2-layer mapping network, ``channel_base`` 32768 capped at 512 maps, magnitude EMA
  ``0.5 ** (batch / 20000)``, no path length regularisation and no style mixing, lazy R1 every 16
  minibatches, ADA (bgc). Config R uses 1x1 convolutions, radial filters, twice the feature maps, and
  blurs D's inputs with sigma 10 fading to 0 over the first ``batch * 200 / 32`` kimg (as ``train.py``
  does for R only; set ``model.blur_init_sigma`` to blur with config T too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from stylegan.archs.base import ModelFamily, OptionSpec, register_family
from stylegan.archs.stylegan2 import build_discriminator, stylegan2_loss
from stylegan.networks_stylegan3 import StyleGAN3Generator

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig


def _optional_non_negative(value: Any) -> str | None:
    ok = value is None or (isinstance(value, int | float) and value >= 0)
    return None if ok else "must be >= 0 or null (the preset's)"


def _preset(config: str):
    def values(resolution: int, gpus: int) -> dict[str, Any]:
        batch = 32
        widen = 2 if config == "r" else 1
        return dict(
            kimg=25000,
            batch=batch,
            batch_gpu=batch // gpus,
            mapping_layers=2,
            channel_base=32768 * widen,
            channel_max=512 * widen,
            mbstd_group_size=4,
            lr_g=0.0025,
            lr_d=0.002,
            gamma=0.5 * (resolution / 128) ** 2,
            ema_kimg=batch * 10 / 32,
            ema_rampup=0.05,
            pl_weight=0.0,
            pl_interval=None,
            style_mixing_prob=0.0,
            arch_options={"config": config},
        )

    return values


@register_family
class StyleGAN3(ModelFamily):
    name = "stylegan3"
    has_w_space = True
    presets = {"stylegan3-t": _preset("t"), "stylegan3-r": _preset("r")}
    options = {
        "config": OptionSpec("t", lambda v: None if v in ("t", "r") else "must be t or r"),
        "blur_init_sigma": OptionSpec(None, _optional_non_negative),  # None: 10 for R, 0 for T
        "blur_fade_kimg": OptionSpec(None, _optional_non_negative),  # None: batch * 200 / 32
        "magnitude_ema_beta": OptionSpec(None, _optional_non_negative),  # None: 0.5 ** (batch / 20000)
    }

    def default_cfg(self, options: Mapping[str, Any]) -> str:
        return f"stylegan3-{options.get('config', 't')}"

    def validate(self, config: TrainingConfig) -> None:
        preset_config = config.cfg.removeprefix("stylegan3-")
        if preset_config != config.arch_options["config"]:
            raise ValueError(
                f"training config: cfg={config.cfg!r} is the preset of config {preset_config!r}, "
                f"but arch_options.config={config.arch_options['config']!r}"
            )

    def build_networks(
        self, config: TrainingConfig, *, img_channels: int, c_dim: int
    ) -> tuple[nn.Module, nn.Module]:
        o = config.arch_options
        radial = o["config"] == "r"
        beta = o["magnitude_ema_beta"]
        G = StyleGAN3Generator(
            z_dim=config.z_dim,
            c_dim=c_dim,
            w_dim=config.w_dim,
            img_resolution=config.resolution,
            img_channels=img_channels,
            mapping_kwargs={"num_layers": config.mapping_layers},
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp,
            conv_kernel=1 if radial else 3,
            use_radial_filters=radial,
            magnitude_ema_beta=0.5 ** (config.batch / 20000) if beta is None else beta,
        )
        return G, build_discriminator(config, img_channels=img_channels, c_dim=c_dim)

    def build_loss(
        self, config: TrainingConfig, G: nn.Module, D: nn.Module, *, augment_pipe: nn.Module | None, schedule
    ):
        o = config.arch_options
        sigma = o["blur_init_sigma"]
        fade = o["blur_fade_kimg"]
        return stylegan2_loss(
            config,
            G,
            D,
            augment_pipe,
            blur_init_sigma=(10.0 if o["config"] == "r" else 0.0) if sigma is None else sigma,
            blur_fade_kimg=config.batch * 200 / 32 if fade is None else fade,
        )

    def sample_kwargs(self, state) -> dict[str, Any]:
        return {}
