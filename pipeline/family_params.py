"""The params checks that need the model library: which presets and `train` keys a model family has."""

from __future__ import annotations

from pipeline.params import Params, ParamsError
from stylegan.archs import get_family


def check_family_params(params: Params) -> None:
    """Refuse `train` settings that `model.arch`'s family does not use (set to anything but off), and
    presets it does not have.

    Kept out of the schema, which does not load the model library, and out of :mod:`pipeline.training`,
    whose imports (MLflow, the importers) would double the start-up of the `check` stage."""
    family = get_family(params.model.arch)
    if params.train.cfg is not None and params.train.cfg not in family.presets:
        presets = sorted(family.presets)
        raise ParamsError(
            f"train.cfg={params.train.cfg!r}: not a {family.name} preset; choose one of {presets}"
        )
    # 0, null or false asks for nothing, which a family without the feature gives: the demo's params.yaml
    # turns path length regularisation and style mixing off, and switching it to ProGAN keeps those lines.
    unused = sorted(
        key
        for key in params.train.model_fields_set & family.unused_fields
        if getattr(params.train, key) not in (0, None, False)
    )
    if unused:
        keys = ", ".join(f"train.{key}" for key in unused)
        raise ParamsError(f"{keys}: not used by model.arch={family.name}; remove them")
