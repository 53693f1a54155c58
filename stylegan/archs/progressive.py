"""What ProGAN and StyleGAN v1 share: progressive growing, its options, and the progressive loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from stylegan.archs.base import ModelFamily, OptionSpec
from stylegan.losses.progressive import OBJECTIVES, ProgressiveLoss
from stylegan.training.schedule import ProgressiveSchedule

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig


def _power_of_two(value: Any) -> str | None:
    ok = isinstance(value, int) and value >= 4 and value & (value - 1) == 0
    return None if ok else "must be a power of two >= 4"


def _non_negative(value: Any) -> str | None:
    return None if isinstance(value, int | float) and value >= 0 else "must be >= 0"


def _positive(value: Any) -> str | None:
    return None if isinstance(value, int | float) and value > 0 else "must be > 0"


def _per_resolution(kind: type) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return "must map resolutions to values"
        for res, item in value.items():
            if _power_of_two(int(res)) or not isinstance(item, kind) or item <= 0:
                return f"must map powers of two >= 4 to positive {kind.__name__}s (bad entry {res}: {item!r})"
        return None

    return check


def _one_of(choices: tuple[str, ...]) -> Any:
    return lambda value: None if value in choices else f"must be one of {choices}"


GROWTH_OPTIONS: dict[str, OptionSpec] = {
    "start_resolution": OptionSpec(4, _power_of_two),
    "fade_kimg": OptionSpec(600.0, _non_negative),
    "stable_kimg": OptionSpec(600.0, _non_negative),
    "batch_schedule": OptionSpec({}, _per_resolution(int)),  # resolution -> global minibatch
    "lr_schedule": OptionSpec({}, _per_resolution(float)),  # resolution -> learning rate of G and D
    "reset_optimizer": OptionSpec(False, lambda v: None if isinstance(v, bool) else "must be true or false"),
    "objective": OptionSpec("wgangp", _one_of(OBJECTIVES)),
    "wgan_lambda": OptionSpec(10.0, _non_negative),
    "wgan_target": OptionSpec(1.0, _positive),
    "epsilon_drift": OptionSpec(1e-3, _non_negative),
}

#: TrainingConfig fields of StyleGAN2's loss and networks that progressive training has no use for.
PROGRESSIVE_UNUSED = frozenset(
    {"num_fp16_res", "conv_clamp", "d_architecture", "r1_interval", "pl_weight", "pl_interval",
     "pl_batch_shrink", "pl_decay", "freeze_d", "d_channel_base", "d_channel_max"}
)  # fmt: skip


def _by_resolution(table: Mapping[Any, Any]) -> dict[int, Any]:
    return {int(res): value for res, value in table.items()}


class ProgressiveFamily(ModelFamily):
    """A family that grows from ``start_resolution``; subclasses build the networks."""

    progressive = True

    def schedule(self, config: TrainingConfig) -> ProgressiveSchedule:
        o = config.arch_options
        lr = _by_resolution(o["lr_schedule"])
        return ProgressiveSchedule(
            start_resolution=o["start_resolution"],
            final_resolution=config.resolution,
            fade_nimg=round(o["fade_kimg"] * 1000),
            stable_nimg=round(o["stable_kimg"] * 1000),
            batch=_by_resolution(o["batch_schedule"]),
            default_batch=config.batch,
            lr_g=lr,
            lr_d=lr,
            default_lr_g=config.lr_g,
            default_lr_d=config.lr_d,
            reset_optimizer=o["reset_optimizer"],
        )

    def validate(self, config: TrainingConfig) -> None:
        o = config.arch_options
        if o["start_resolution"] > config.resolution:
            raise ValueError(
                f"training config: arch_options.start_resolution={o['start_resolution']} is above the "
                f"data resolution {config.resolution}"
            )
        if o["fade_kimg"] + o["stable_kimg"] <= 0:
            raise ValueError("training config: arch_options.fade_kimg and stable_kimg cannot both be 0")
        for res, batch in _by_resolution(o["batch_schedule"]).items():
            if batch % config.gpus or (batch // config.gpus) % min(config.batch_gpu, batch // config.gpus):
                raise ValueError(
                    f"training config: arch_options.batch_schedule[{res}]={batch} must split into "
                    f"gpus={config.gpus} equal shares of whole rounds of batch_gpu={config.batch_gpu}"
                )
        if config.style_mixing_prob > 0 and not self.has_w_space:
            raise ValueError(f"training config: style_mixing_prob must be 0 for {self.name} (it has no W)")

    def build_loss(
        self, config: TrainingConfig, G: nn.Module, D: nn.Module, *, augment_pipe: nn.Module | None, schedule
    ) -> ProgressiveLoss:
        o = config.arch_options
        return ProgressiveLoss(
            G,
            D,
            schedule=schedule,
            objective=o["objective"],
            wgan_lambda=o["wgan_lambda"],
            wgan_target=o["wgan_target"],
            epsilon_drift=o["epsilon_drift"],
            r1_gamma=config.gamma,
            style_mixing_prob=config.style_mixing_prob if self.has_w_space else 0.0,
            acgan_weight=o.get("acgan_weight", 0.0),
            augment_pipe=augment_pipe,
        )
