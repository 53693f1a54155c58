"""Training configurations: a model family's preset and the user's overrides.

:func:`resolve_config` turns a family (``arch``), a preset name, the data resolution, the number of
GPUs and user overrides into a :class:`TrainingConfig`, as NVIDIA's ``train.py`` does for StyleGAN2-ADA
(``auto`` derives the batch, R1 gamma, EMA half-life and model width from the resolution and the GPU
count; the paper presets fix them). Each family (:mod:`stylegan.archs`) owns its presets, its extra
options (``arch_options``) and the fields it does not use. :func:`run_key` names a run by what
determines its result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from stylegan.archs.base import get_family
from stylegan.augment import AUGPIPE_PRESETS

AUG_MODES = ("ada", "fixed", "noaug")
D_ARCHITECTURES = ("orig", "skip", "resnet")


# Fields that schedule reporting and checkpoints but do not change the trained weights.
BOOKKEEPING_FIELDS = ("kimg", "tick_kimg", "snapshot_kimg", "keep_checkpoints", "sample_seeds")

# Short names accepted by resolve_config, as train.py's command line spells them.
_ALIASES = {"map": "mapping_layers", "mbstd": "mbstd_group_size", "r1_gamma": "gamma"}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines a training run (see :func:`resolve_config`)."""

    cfg: str
    resolution: int
    arch: str = "stylegan2"
    arch_options: dict[str, Any] = field(default_factory=dict)  # the family's own settings
    gpus: int = 1
    kimg: float = 25000
    batch: int = 32
    batch_gpu: int = 4  # images per forward/backward round on one process
    # Networks.
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256
    d_architecture: str = "resnet"
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    d_channel_base: int | None = None  # D's own widths when they differ from G's (None: G's)
    d_channel_max: int | None = None
    freeze_d: int = 0  # Freeze-D: the first layers of D (from the image) stay fixed, as SG2-ADA's --freezed
    # Optimisation (Adam) and losses.
    lr_g: float = 0.002
    lr_d: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    gamma: float = 10.0
    r1_interval: int | None = 16
    pl_weight: float = 2.0
    pl_interval: int | None = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
    # Generator EMA.
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    # Augmentation.
    aug: str = "ada"
    augpipe: str = "bgc"
    aug_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500
    # Reporting and checkpoints.
    tick_kimg: float = 4
    snapshot_kimg: float = 200
    keep_checkpoints: int = 3
    sample_seeds: tuple[int, ...] = field(default_factory=lambda: tuple(range(16)))
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "sample_seeds", tuple(int(s) for s in self.sample_seeds))
        object.__setattr__(self, "arch_options", get_family(self.arch).resolve_options(self.arch_options))
        _validate(self)

    @property
    def batch_per_gpu(self) -> int:
        return self.batch // self.gpus

    @property
    def round_size(self) -> int:
        """Images per forward/backward round: ``batch_gpu``, or the whole per-GPU batch when it is smaller
        (progressive presets set a large ``batch_gpu`` so that every growth stage runs in one round)."""
        return min(self.batch_gpu, self.batch_per_gpu)

    @property
    def total_nimg(self) -> int:
        return round(self.kimg * 1000)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)

    def identity(self) -> dict[str, Any]:
        """The fields that determine the trained weights: what :func:`run_key` should hash.

        The total length (``kimg``) is left out so that a longer run resumes from a shorter one's
        checkpoints; tick, snapshot and sample settings only change what is reported and kept.
        """
        identity = {k: v for k, v in self.to_dict().items() if k not in BOOKKEEPING_FIELDS}
        if identity["arch"] == "stylegan2" and not identity["arch_options"]:  # as before families existed,
            del identity["arch"], identity["arch_options"]  # so their runs keep their checkpoint folders
        return identity


_AT_LEAST_ONE = (
    "gpus", "batch", "batch_gpu", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max",
    "mbstd_num_channels", "pl_batch_shrink", "ada_interval", "keep_checkpoints",
)  # fmt: skip
_POSITIVE = ("kimg", "lr_g", "lr_d", "eps", "tick_kimg", "snapshot_kimg", "ada_kimg")
_NON_NEGATIVE = ("num_fp16_res", "gamma", "pl_weight", "ema_kimg", "aug_p", "freeze_d")
_NON_NEGATIVE_OR_NONE = ("r1_interval", "pl_interval", "ema_rampup")


def _validate(c: TrainingConfig) -> None:
    def require(ok: bool, key: str, requirement: str) -> None:
        if not ok:
            raise ValueError(f"training config: {key}={getattr(c, key)!r} {requirement}")

    family = get_family(c.arch)
    require(
        c.cfg in family.presets, "cfg", f"is not a {c.arch} preset; choose one of {sorted(family.presets)}"
    )
    require(
        c.resolution >= 4 and c.resolution & (c.resolution - 1) == 0,
        "resolution",
        "must be a power of two >= 4",
    )
    for key in _AT_LEAST_ONE:
        require(getattr(c, key) >= 1, key, "must be >= 1")
    for key in _POSITIVE:
        require(getattr(c, key) > 0, key, "must be > 0")
    for key in _NON_NEGATIVE:
        require(getattr(c, key) >= 0, key, "must be >= 0")
    for key in _NON_NEGATIVE_OR_NONE:
        require(getattr(c, key) is None or getattr(c, key) >= 0, key, "must be >= 0 or None")
    require(c.conv_clamp is None or c.conv_clamp > 0, "conv_clamp", "must be > 0 or None")
    require(0 <= c.style_mixing_prob <= 1, "style_mixing_prob", "must be in [0, 1]")
    require(0 <= c.pl_decay <= 1, "pl_decay", "must be in [0, 1]")
    require(0 < c.ada_target < 1, "ada_target", "must be in (0, 1)")
    require(len(c.betas) == 2 and all(0 <= b < 1 for b in c.betas), "betas", "must be two values in [0, 1)")
    require(c.aug in AUG_MODES, "aug", f"must be one of {AUG_MODES}")
    require(c.augpipe in AUGPIPE_PRESETS, "augpipe", f"must be one of {sorted(AUGPIPE_PRESETS)}")
    require(c.d_architecture in D_ARCHITECTURES, "d_architecture", f"must be one of {D_ARCHITECTURES}")
    require(c.batch % c.gpus == 0, "batch", f"must be divisible by gpus={c.gpus}")
    require(
        c.batch_per_gpu % c.round_size == 0, "batch_gpu", f"must divide the per-GPU batch {c.batch_per_gpu}"
    )
    group = min(c.mbstd_group_size, c.round_size)
    require(c.round_size % group == 0, "mbstd_group_size", f"must divide batch_gpu={c.round_size}")
    require(len(c.sample_seeds) > 0, "sample_seeds", "must not be empty")
    family.validate(c)


def resolve_config(
    cfg_name: str,
    resolution: int,
    gpus: int = 1,
    overrides: Mapping[str, Any] | None = None,
    *,
    arch: str = "stylegan2",
    arch_options: Mapping[str, Any] | None = None,
) -> TrainingConfig:
    """Build the config of family ``arch``'s preset ``cfg_name`` for ``resolution`` px data on ``gpus`` GPUs.

    ``overrides`` win over the preset. Keys are :class:`TrainingConfig` field names, plus ``lr`` (both
    learning rates), ``fmaps`` (``channel_base = fmaps * 32768``), ``map``, ``mbstd`` and ``r1_gamma``;
    a ``None`` value keeps the preset's. Overriding ``batch`` without ``batch_gpu`` gives one round per
    GPU (``batch_gpu = batch // gpus``), as ``train.py --batch``. Overriding a field the family does not
    use is an error. ``arch_options`` are the family's own settings (see its ``options``); they win over
    the ones the preset implies.
    """
    family = get_family(arch)
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    preset = family.preset_values(cfg_name, resolution, gpus)
    options = {**preset.pop("arch_options", {}), **(arch_options or {})}
    values: dict[str, Any] = dict(
        cfg=cfg_name, resolution=resolution, gpus=gpus, arch=arch, arch_options=options
    )
    values.update(preset)

    field_names = {f.name for f in dataclasses.fields(TrainingConfig)}
    given = {_ALIASES.get(k, k): v for k, v in (overrides or {}).items() if v is not None}
    for key in ("cfg", "resolution", "gpus", "arch", "arch_options"):
        if key in given:
            raise ValueError(f"override {key!r} is an argument of resolve_config, not an override")
    if "lr" in given:
        lr = given.pop("lr")
        given.setdefault("lr_g", lr)
        given.setdefault("lr_d", lr)
    if "fmaps" in given:
        given.setdefault("channel_base", int(given.pop("fmaps") * 32768))
    unknown = sorted(set(given) - field_names)
    if unknown:
        raise ValueError(f"unknown training overrides: {', '.join(unknown)}")
    unused = sorted(set(given) & family.unused_fields)
    if unused:
        raise ValueError(f"{arch} does not use {', '.join(unused)}; remove them")
    if "batch" in given and "batch_gpu" not in given and not family.progressive:
        given["batch_gpu"] = given["batch"] // gpus
    values.update(given)
    return TrainingConfig(**values)


def build_networks(config: TrainingConfig, *, img_channels: int, c_dim: int) -> tuple[nn.Module, nn.Module]:
    """A fresh generator and discriminator of the config's family."""
    return get_family(config.arch).build_networks(config, img_channels=img_channels, c_dim=c_dim)


def run_key(config_dict: Mapping[str, Any], dataset_fingerprint: str) -> str:
    """A short stable name for a run: the hash of its config (use :meth:`TrainingConfig.identity`) and
    of its data (e.g. the shard index checksum). Same inputs, same key, same checkpoint folder."""
    payload = json.dumps({"config": config_dict, "dataset": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
