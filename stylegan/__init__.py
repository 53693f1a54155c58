"""StyleGAN2-ADA in plain PyTorch: networks, importer of official weights, training, metrics, generation.

The library stands on its own: it never imports DVC, Prefect, MLflow or the pipeline around it.
"""

from stylegan.generate import Sampler
from stylegan.interop import (
    discriminator_from_official,
    export_official_state_dict,
    generator_from_official,
    load_official_npz,
    save_official_npz,
)
from stylegan.latents import style_mix, truncate
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.serialization import load_network, save_network

__all__ = [
    "Discriminator",
    "Generator",
    "discriminator_from_official",
    "export_official_state_dict",
    "generator_from_official",
    "load_network",
    "load_official_npz",
    "Sampler",
    "save_network",
    "save_official_npz",
    "style_mix",
    "truncate",
]
