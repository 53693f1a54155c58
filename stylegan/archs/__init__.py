"""Model families behind one seam: see :mod:`stylegan.archs.base`."""

from stylegan.archs.base import (
    FAMILY_NAMES,
    MissingWSpaceError,
    ModelFamily,
    OptionSpec,
    get_family,
    has_w_space,
    register_family,
    require_w_space,
)

__all__ = [
    "FAMILY_NAMES",
    "MissingWSpaceError",
    "ModelFamily",
    "OptionSpec",
    "get_family",
    "has_w_space",
    "register_family",
    "require_w_space",
]
