"""StyleGAN2-ADA (Karras et al. 2020): the official ``--cfg`` presets, networks and loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from stylegan.archs.base import ModelFamily, register_family
from stylegan.losses.stylegan2 import StyleGAN2Loss
from stylegan.networks_stylegan2 import Discriminator, Generator

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig
    from stylegan.training.schedule import Schedule


@dataclass(frozen=True)
class Preset:
    ref_gpus: int
    kimg: float
    batch: int
    mbstd: int
    fmaps: float
    lr: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    mapping_layers: int

    def values(self, gpus: int) -> dict[str, Any]:
        """TrainingConfig values, as NVIDIA's train.py derives them from a cfg spec."""
        return dict(
            kimg=self.kimg,
            batch=self.batch,
            batch_gpu=max(self.batch // self.ref_gpus, 1),
            mapping_layers=self.mapping_layers,
            channel_base=int(self.fmaps * 32768),
            mbstd_group_size=self.mbstd,
            lr_g=self.lr,
            lr_d=self.lr,
            gamma=self.gamma,
            ema_kimg=self.ema_kimg,
            ema_rampup=self.ema_rampup,
        )


def auto_preset(resolution: int, gpus: int) -> Preset:
    """train.py's ``auto``: fill the GPUs up to 64 images, 4-image mbstd groups, gamma ~ res^2 / batch."""
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return Preset(
        ref_gpus=gpus,
        kimg=25000,
        batch=batch,
        mbstd=min(batch // gpus, 4),
        fmaps=1.0 if resolution >= 512 else 0.5,
        lr=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * resolution**2 / batch,
        ema_kimg=batch * 10 / 32,
        ema_rampup=0.05,
        mapping_layers=2,
    )


# NVIDIA's train.py cfg_specs; 'auto' is filled in from the resolution and GPU count.
SPECS: dict[str, Preset | None] = {
    "auto": None,
    "stylegan2": Preset(8, 25000, 32, 4, 1.0, 0.002, 10.0, 10.0, None, 8),
    "paper256": Preset(8, 25000, 64, 8, 0.5, 0.0025, 1.0, 20.0, None, 8),
    "paper512": Preset(8, 25000, 64, 8, 1.0, 0.0025, 0.5, 20.0, None, 8),
    "paper1024": Preset(8, 25000, 32, 4, 1.0, 0.002, 2.0, 10.0, None, 8),
    "cifar": Preset(2, 100000, 64, 32, 1.0, 0.0025, 0.01, 500.0, 0.05, 2),
}


def _preset(name: str):
    def values(resolution: int, gpus: int) -> dict[str, Any]:
        spec = SPECS[name] or auto_preset(resolution, gpus)
        result = spec.values(gpus)
        if name == "cifar":  # no path length regularisation, no mixing, no residual D
            result.update(pl_weight=0.0, style_mixing_prob=0.0, d_architecture="orig")
        return result

    return values


def build_stylegan2_networks(
    config: TrainingConfig, *, img_channels: int, c_dim: int
) -> tuple[nn.Module, nn.Module]:
    """A fresh StyleGAN2 generator and discriminator as ``config`` describes them."""
    shared = dict(
        channel_base=config.channel_base,
        channel_max=config.channel_max,
        num_fp16_res=config.num_fp16_res,
        conv_clamp=config.conv_clamp,
    )
    G = Generator(
        z_dim=config.z_dim,
        c_dim=c_dim,
        w_dim=config.w_dim,
        img_resolution=config.resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": config.mapping_layers},
        synthesis_kwargs=shared,
    )
    D = build_discriminator(config, img_channels=img_channels, c_dim=c_dim)
    return G, D


def build_discriminator(config: TrainingConfig, *, img_channels: int, c_dim: int) -> Discriminator:
    """StyleGAN2's discriminator (StyleGAN3 trains with it too)."""
    return Discriminator(
        c_dim=c_dim,
        img_resolution=config.resolution,
        img_channels=img_channels,
        architecture=config.d_architecture,
        channel_base=config.d_channel_base or config.channel_base,
        channel_max=config.d_channel_max or config.channel_max,
        num_fp16_res=config.num_fp16_res,
        conv_clamp=config.conv_clamp,
        block_kwargs={"freeze_layers": config.freeze_d},
        epilogue_kwargs={
            "mbstd_group_size": config.mbstd_group_size,
            "mbstd_num_channels": config.mbstd_num_channels,
        },
    )


def stylegan2_loss(
    config: TrainingConfig, G: nn.Module, D: nn.Module, augment_pipe: nn.Module | None, **extra: Any
) -> StyleGAN2Loss:
    return StyleGAN2Loss(
        G,
        D,
        augment_pipe=augment_pipe,
        r1_gamma=config.gamma,
        style_mixing_prob=config.style_mixing_prob,
        pl_weight=config.pl_weight,
        pl_batch_shrink=config.pl_batch_shrink,
        pl_decay=config.pl_decay,
        r1_interval=config.r1_interval,
        pl_interval=config.pl_interval,
        **extra,
    )


@register_family
class StyleGAN2(ModelFamily):
    name = "stylegan2"
    has_w_space = True
    presets = {name: _preset(name) for name in SPECS}

    def build_networks(
        self, config: TrainingConfig, *, img_channels: int, c_dim: int
    ) -> tuple[nn.Module, nn.Module]:
        return build_stylegan2_networks(config, img_channels=img_channels, c_dim=c_dim)

    def build_loss(
        self,
        config: TrainingConfig,
        G: nn.Module,
        D: nn.Module,
        *,
        augment_pipe: nn.Module | None,
        schedule: Schedule,
    ) -> StyleGAN2Loss:
        return stylegan2_loss(config, G, D, augment_pipe)

    def sample_kwargs(self, state) -> dict[str, Any]:
        return {"noise_mode": "const"}
