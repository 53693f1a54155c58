"""StyleGAN in plain PyTorch, every generation: networks, importers of the original weights, training,
metrics and generation.

The library stands on its own: it never imports DVC, Prefect, MLflow or the pipeline around it. The names
below load on first use, so that ``import stylegan.files`` (say) does not pull in torch and the networks.
"""

import importlib

_EXPORTS = {
    "Discriminator": "stylegan.networks_stylegan2",
    "Generator": "stylegan.networks_stylegan2",
    "Sampler": "stylegan.generate",
    "discriminator_from_official": "stylegan.interop",
    "export_official_state_dict": "stylegan.interop",
    "generator_from_official": "stylegan.interop",
    "load_official_npz": "stylegan.interop",
    "save_official_npz": "stylegan.interop",
    "style_mix": "stylegan.latents",
    "truncate": "stylegan.latents",
    "load_network": "stylegan.serialization",
    "save_network": "stylegan.serialization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stylegan' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
