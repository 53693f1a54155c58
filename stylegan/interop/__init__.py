"""Networks in and out of the original implementations, with exact outputs.

One module per source format:

- :mod:`.stylegan2_npz`: NVIDIA StyleGAN2-ADA state dicts and the reference ``.npz`` format.
"""

from stylegan.interop.stylegan2_npz import (
    discriminator_from_official,
    discriminator_kwargs_from_meta,
    export_official_state_dict,
    generator_from_official,
    generator_kwargs_from_meta,
    load_official_npz,
    official_state_dict_to_ours,
    save_official_npz,
)

__all__ = [
    "discriminator_from_official",
    "discriminator_kwargs_from_meta",
    "export_official_state_dict",
    "generator_from_official",
    "generator_kwargs_from_meta",
    "load_official_npz",
    "official_state_dict_to_ours",
    "save_official_npz",
]
