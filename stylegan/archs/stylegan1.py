"""StyleGAN v1 (Karras et al. 2019): mapping network, AdaIN, noise, style mixing, progressive growing.

Presets (``train.cfg``):

- ``seed000``: seed 000's settings (t-ae/style-gan-pytorch ``settings.json``): z and w 256, a 7-layer
  mapping network (as its ``network.py``; the paper has 8), bilinear
  resampling without blur, growth from 8 px (its level 2) with 1.2 M images fading and 1.2 M
  stabilising per resolution, minibatch 64 at 4-8 px, 32 at 16-32, 16 at 64, 8 at 128-256 px, lr 0.001
  for G and D and 1e-5 for the mapping network (``lr_scale`` 0.01), Adam (0, 0.99, 1e-8) never reset,
  WGAN-GP. Its EMA (1e-4 per minibatch) is a half-life of 55 kimg at a minibatch of 8.
- ``paper``: the paper's FFHQ setup (NVlabs/stylegan ``train.py``, 1 GPU): z and w 512, ``fmap_base``
  8192 capped at 512, the [1, 2, 1] blur, nearest resampling, 600 + 600 kimg per resolution, the same
  minibatch table as ProGAN, lr 0.001 (0.0015 at 128 px, 0.002 at 256, 0.003 above), mapping lr x0.01,
  non-saturating logistic loss with R1 (gamma 10), style mixing 0.9, 25,000 kimg, EMA half-life 10 kimg.

seed 000 chose bilinear upsampling without blur because its implementation's blur and bilinear filter
overlap (both low-pass the upsampled features); the official code blurs after nearest upsampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from stylegan.archs.base import OptionSpec, register_family
from stylegan.archs.progressive import GROWTH_OPTIONS, PROGRESSIVE_UNUSED, ProgressiveFamily, _positive
from stylegan.networks_stylegan1 import StyleGAN1Discriminator, StyleGAN1Generator

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig

SEED000_BATCH = {4: 64, 8: 64, 16: 32, 32: 32, 64: 16, 128: 8, 256: 8}
PAPER_BATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
PAPER_LR = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}


#: The arch_options each preset implies, for params files (``configs/``) and tests.
PRESET_OPTIONS = {
    "seed000": {
        "start_resolution": 8, "fade_kimg": 1200.0, "stable_kimg": 1200.0, "batch_schedule": SEED000_BATCH,
        "objective": "wgangp", "upsample_mode": "bilinear", "use_blur": False, "const_init": "one_normal",
    },
    "paper": {
        "start_resolution": 8, "fade_kimg": 600.0, "stable_kimg": 600.0, "batch_schedule": PAPER_BATCH,
        "lr_schedule": PAPER_LR, "objective": "logistic_r1", "upsample_mode": "nearest", "use_blur": True,
        "const_init": "ones",
    },
}  # fmt: skip


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _seed000(resolution: int, gpus: int) -> dict[str, Any]:
    return dict(
        kimg=15000,
        batch=8,
        batch_gpu=512,
        z_dim=256,
        w_dim=256,
        mapping_layers=7,  # t-ae's mapping network has 7 dense layers, not the paper's 8
        channel_base=4096,
        channel_max=256,
        lr_g=0.001,
        lr_d=0.001,
        ema_kimg=55.0,
        ema_rampup=None,
        style_mixing_prob=0.9,
        arch_options=PRESET_OPTIONS["seed000"],
    )


def _paper(resolution: int, gpus: int) -> dict[str, Any]:
    return dict(
        kimg=25000,
        batch=4,
        batch_gpu=512,
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        channel_base=16384,
        channel_max=512,
        lr_g=0.001,
        lr_d=0.001,
        gamma=10.0,
        ema_kimg=10.0,
        ema_rampup=None,
        style_mixing_prob=0.9,
        arch_options=PRESET_OPTIONS["paper"],
    )


@register_family
class StyleGAN1(ProgressiveFamily):
    name = "stylegan1"
    has_w_space = True
    presets = {"seed000": _seed000, "paper": _paper}
    options = {
        **GROWTH_OPTIONS,
        "upsample_mode": OptionSpec("bilinear", lambda v: None if v in ("bilinear", "nearest") else
                                    "must be bilinear or nearest"),
        "use_blur": OptionSpec(False, _bool),
        "use_noise": OptionSpec(True, _bool),
        "normalize_latents": OptionSpec(True, _bool),
        "const_init": OptionSpec("one_normal", lambda v: None if v in ("zeros", "ones", "zero_normal",
                                 "one_normal") else "must be zeros, ones, zero_normal or one_normal"),
        "mapping_lr_scale": OptionSpec(0.01, _positive),
    }  # fmt: skip
    unused_fields = PROGRESSIVE_UNUSED | {"mbstd_group_size", "mbstd_num_channels"}

    def build_networks(
        self, config: TrainingConfig, *, img_channels: int, c_dim: int
    ) -> tuple[nn.Module, nn.Module]:
        o = config.arch_options
        shared = dict(
            c_dim=c_dim,
            img_resolution=config.resolution,
            img_channels=img_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            use_blur=o["use_blur"],
        )
        G = StyleGAN1Generator(
            z_dim=config.z_dim,
            w_dim=config.w_dim,
            mapping_layers=config.mapping_layers,
            normalize_latents=o["normalize_latents"],
            upsample_mode=o["upsample_mode"],
            use_noise=o["use_noise"],
            const_init=o["const_init"],
            **shared,
        )
        D = StyleGAN1Discriminator(downsample_mode=o["upsample_mode"], **shared)
        return G, D

    def param_groups(self, config: TrainingConfig, network: str, module: nn.Module) -> list[dict[str, Any]]:
        if network != "G":
            return super().param_groups(config, network, module)
        mapping = list(module.mapping.parameters())
        ids = {id(p) for p in mapping}
        rest = [p for p in module.parameters() if id(p) not in ids]
        return [
            {"params": mapping, "lr_scale": config.arch_options["mapping_lr_scale"]},
            {"params": rest},
        ]

    def sample_kwargs(self, state) -> dict[str, Any]:
        return {**state.network_kwargs, "noise_mode": "const"}
