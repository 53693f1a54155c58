"""ProGAN (Karras et al. 2018): progressive growing, pixel norm, equalized lr, minibatch stddev, WGAN-GP.

Presets (``train.cfg``):

- ``paper``: the official code's ``preset-v2-1gpu`` (config.py of tkarras/progressive_growing_of_gans):
  latent 512, ``fmap_base`` 8192 capped at 512 maps, 600 kimg stabilising + 600 kimg fading per
  resolution, minibatch 128 at 4-16 px halving to 4 at 512 px (16 above), lr 0.001 (0.0015 at 1024 px),
  Adam (0, 0.99, 1e-8) with its moments reset at every new stage, WGAN-GP (lambda 10, drift 1e-3),
  12,000 kimg. ProGAN averages G with a decay of 0.999 per minibatch; here the EMA half-life is 10 kimg,
  which equals that at a minibatch of 14.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from stylegan.archs.base import OptionSpec, register_family
from stylegan.archs.progressive import GROWTH_OPTIONS, PROGRESSIVE_UNUSED, ProgressiveFamily, _non_negative
from stylegan.networks_progan import ProGANDiscriminator, ProGANGenerator

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig

PAPER_BATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
#: The arch_options the paper preset implies (progressive schedule and loss).
PAPER_OPTIONS = {"batch_schedule": PAPER_BATCH, "lr_schedule": {1024: 0.0015}, "reset_optimizer": True}


def _paper(resolution: int, gpus: int) -> dict[str, Any]:
    return dict(
        kimg=12000,
        batch=4,  # minibatch_base, for resolutions the table does not list
        batch_gpu=512,  # one round per GPU at every stage
        z_dim=512,
        channel_base=16384,  # min(16384 / res, 512): ProGAN's fmap_base 8192 by its stage count
        channel_max=512,
        mbstd_group_size=4,
        lr_g=0.001,
        lr_d=0.001,
        gamma=10.0,
        ema_kimg=10.0,
        ema_rampup=None,
        style_mixing_prob=0.0,
        arch_options=PAPER_OPTIONS,
    )


@register_family
class ProGAN(ProgressiveFamily):
    name = "progan"
    has_w_space = False
    presets = {"paper": _paper}
    options = {
        **GROWTH_OPTIONS,
        "pixel_norm": OptionSpec(True, lambda v: None if isinstance(v, bool) else "must be true or false"),
        "acgan_weight": OptionSpec(1.0, _non_negative),
    }
    unused_fields = PROGRESSIVE_UNUSED | {"w_dim", "mapping_layers", "style_mixing_prob"}

    def build_networks(
        self, config: TrainingConfig, *, img_channels: int, c_dim: int
    ) -> tuple[nn.Module, nn.Module]:
        shared = dict(
            c_dim=c_dim,
            img_resolution=config.resolution,
            img_channels=img_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
        )
        G = ProGANGenerator(z_dim=config.z_dim, pixel_norm=config.arch_options["pixel_norm"], **shared)
        D = ProGANDiscriminator(mbstd_group_size=config.mbstd_group_size, **shared)
        return G, D
