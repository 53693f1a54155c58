"""The seam between training and the model families (ProGAN, StyleGAN v1, StyleGAN2-ADA, StyleGAN3).

A :class:`ModelFamily` owns everything that differs between generations: its presets, its networks,
its loss and its schedule (constant, or progressive growing). The training loop, the stages and the
tools ask the family for these and never branch on its name. Families are looked up by the name that
``model.arch`` gives (:func:`get_family`); each lives in its own module of this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from stylegan.training.configs import TrainingConfig
    from stylegan.training.schedule import Schedule, TrainingState


class Loss(Protocol):
    """What the training loop needs of a loss: phases to run and gradients to accumulate."""

    def phase_intervals(self) -> dict[str, int | None]:
        """Lazy regularisation interval per network (``{"G": 4, "D": 16}``); None fuses main + reg."""

    def has_work(self, phase: str) -> bool:
        """False for a phase whose terms are all weighted zero (the loop skips it)."""

    def accumulate_gradients(
        self,
        phase: str,
        real_img: Tensor,
        real_c: Tensor,
        gen_z: Tensor,
        gen_c: Tensor,
        gain: float,
        cur_nimg: int = 0,
    ) -> dict[str, Tensor]:
        """Backpropagate ``gain`` x the phase's mean loss at ``cur_nimg`` images; return statistics."""

    def state_dict(self) -> dict[str, Tensor]:
        """Running state to checkpoint (e.g. the path-length mean)."""

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None: ...


@dataclass(frozen=True)
class OptionSpec:
    """One family-specific training option (``TrainingConfig.arch_options``) with its default."""

    default: Any
    check: Any = None  # callable(value) -> error message or None

    def validate(self, key: str, value: Any) -> None:
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise ValueError(f"training config: arch_options.{key}={value!r} {problem}")


class ModelFamily:
    """One generation of the architecture. Subclasses set the class attributes and the four builders."""

    name: ClassVar[str]
    #: Style families have ``mapping``/``synthesis``/``num_ws``/``w_dim``/``mapping.w_avg``: truncation,
    #: style mixing, PPL in W, the w_avg stage and the projector need them.
    has_w_space: ClassVar[bool]
    #: Official presets by name (``train.cfg``): each a function (resolution, gpus) -> TrainingConfig values.
    presets: ClassVar[Mapping[str, Any]]
    #: Options of this family that are not TrainingConfig fields, with defaults and checks.
    options: ClassVar[Mapping[str, OptionSpec]] = {}
    #: Progressive growing: resolution, batch and learning rates change with the images seen.
    progressive: ClassVar[bool] = False
    #: TrainingConfig fields this family does not use; setting them is an error, not a silent no-op.
    unused_fields: ClassVar[frozenset[str]] = frozenset()

    def default_cfg(self, options: Mapping[str, Any]) -> str:
        """The preset used when ``train.cfg`` is not given (the first, unless the options pick one)."""
        return next(iter(self.presets))

    def preset_values(self, cfg_name: str, resolution: int, gpus: int) -> dict[str, Any]:
        if cfg_name not in self.presets:
            raise ValueError(
                f"unknown cfg {cfg_name!r} for {self.name}; choose one of {sorted(self.presets)}"
            )
        return dict(self.presets[cfg_name](resolution, gpus))

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` completed with defaults; unknown keys and bad values are errors naming the key."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ValueError(
                f"unknown {self.name} options: {', '.join(unknown)}; known: {sorted(self.options)}"
            )
        values = {key: spec.default for key, spec in self.options.items()}
        values.update(given)
        for key, value in values.items():
            self.options[key].validate(key, value)
        return values

    def validate(self, config: TrainingConfig) -> None:
        """Family-specific checks of a whole config, beyond the per-option ones."""

    def build_networks(
        self, config: TrainingConfig, *, img_channels: int, c_dim: int
    ) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def build_loss(
        self,
        config: TrainingConfig,
        G: nn.Module,
        D: nn.Module,
        *,
        augment_pipe: nn.Module | None,
        schedule: Schedule,
    ) -> Loss:
        raise NotImplementedError

    def param_groups(self, config: TrainingConfig, network: str, module: nn.Module) -> list[dict[str, Any]]:
        """Adam parameter groups of ``network`` ("G" or "D"); a group's ``lr_scale`` scales its lr."""
        return [{"params": list(module.parameters())}]

    def schedule(self, config: TrainingConfig) -> Schedule:
        from stylegan.training.schedule import ConstantSchedule

        return ConstantSchedule(config)

    def sample_kwargs(self, state: TrainingState) -> dict[str, Any]:
        """Keyword arguments of ``G(z, c, ...)`` for the tick sample grids at ``state``."""
        return dict(state.network_kwargs)

    @torch.no_grad()
    def sample(self, G: nn.Module, z: Tensor, c: Tensor, state: TrainingState) -> Tensor:
        """Images of ``G`` at the schedule's current resolution, shown at the full resolution."""
        img = G(z, c, **self.sample_kwargs(state))
        factor = G.img_resolution // img.shape[-1]
        return img.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3) if factor > 1 else img


class MissingWSpaceError(ValueError):
    """An operation that needs a W space (truncation, mixing, PPL in W, w_avg, projection)."""


def require_w_space(G: nn.Module, what: str) -> None:
    """Raise :class:`MissingWSpaceError` naming ``what`` when ``G`` has no mapping network."""
    if not has_w_space(G):
        raise MissingWSpaceError(
            f"{what} needs a generator with a W space (mapping network and w_avg); "
            f"{type(G).__name__} has none (ProGAN maps z straight to images)"
        )


def has_w_space(G: nn.Module) -> bool:
    return hasattr(G, "mapping") and hasattr(G, "synthesis")


# --- the registry -----------------------------------------------------------------------------------

_MODULES = {
    "stylegan2": "stylegan.archs.stylegan2",
    "stylegan3": "stylegan.archs.stylegan3",
    "stylegan1": "stylegan.archs.stylegan1",
    "progan": "stylegan.archs.progan",
}
_FAMILIES: dict[str, ModelFamily] = {}

FAMILY_NAMES: tuple[str, ...] = tuple(_MODULES)


def register_family(family_cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator of each family module: make the family known under its ``name``."""
    if family_cls.name not in _MODULES:
        raise ValueError(f"family {family_cls.name!r} has no module entry in {__name__}._MODULES")
    _FAMILIES[family_cls.name] = family_cls()
    return family_cls


def get_family(name: str) -> ModelFamily:
    """The family called ``name`` (``model.arch``), importing its module on first use."""
    if name not in _MODULES:
        raise ValueError(f"unknown model family {name!r}; choose one of {list(_MODULES)}")
    if name not in _FAMILIES:
        importlib.import_module(_MODULES[name])
    return _FAMILIES[name]
