"""Networks in and out of the original implementations, with exact outputs.

One module per source format:

- :mod:`.progan_zoo`: pytorch_GAN_zoo's ProGAN (GNet/DNet state dicts and checkpoints).
- :mod:`.stylegan1_tae`: seed 000's StyleGAN v1 (t-ae/style-gan-pytorch state dicts and checkpoints).
- :mod:`.stylegan2_npz`: NVIDIA StyleGAN2-ADA state dicts and the reference ``.npz`` format.
- :mod:`.stylegan3_npz`: NVIDIA StyleGAN3 generator state dicts and their reference ``.npz`` files
  (read by :func:`load_official_npz` too).
- :mod:`.pickles`: NVIDIA's StyleGAN2-ADA / StyleGAN3 snapshot pickles, read without running their code
  (TF-era pickles through :mod:`.tf_pickles`).
"""

from stylegan.interop.pickles import PickleRefusedError, load_official_pkl
from stylegan.interop.progan_zoo import load_progan_zoo
from stylegan.interop.stylegan1_tae import load_stylegan1_tae
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
from stylegan.interop.stylegan3_npz import stylegan3_generator_from_official, stylegan3_kwargs_from_meta

__all__ = [
    "load_progan_zoo",
    "load_stylegan1_tae",
    "PickleRefusedError",
    "load_official_pkl",
    "discriminator_from_official",
    "discriminator_kwargs_from_meta",
    "export_official_state_dict",
    "generator_from_official",
    "generator_kwargs_from_meta",
    "load_official_npz",
    "official_state_dict_to_ours",
    "save_official_npz",
    "stylegan3_generator_from_official",
    "stylegan3_kwargs_from_meta",
]
