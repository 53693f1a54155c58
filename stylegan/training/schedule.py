"""Training schedules: what resolution, fade-in, batch and learning rates apply after ``cur_nimg`` images.

StyleGAN2 and StyleGAN3 train at one resolution with fixed settings (:class:`ConstantSchedule`).
ProGAN and StyleGAN v1 grow progressively (:class:`ProgressiveSchedule`): they train ``stable_nimg``
images at the start resolution, then for every doubling fade the new block in over ``fade_nimg``
images (alpha 0 -> 1, alpha being the weight of the newest block) and stabilise it for ``stable_nimg``
images, until the final resolution, which trains for the rest of the run. A schedule is a pure
function of the images seen, so a run resumed in the middle of a fade-in continues exactly there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class TrainingState:
    resolution: int
    alpha: float  # weight of the newest block; 1 = fully grown
    batch: int  # global minibatch
    lr_g: float
    lr_d: float
    segment: int  # counts fade-ins and stabilisations started; optimizers may reset when it changes
    progressive: bool = False

    @property
    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that select this state in ``G(z, c, ...)`` and ``D(img, c, ...)``."""
        return {"resolution": self.resolution, "alpha": self.alpha} if self.progressive else {}

    @property
    def phase_name(self) -> str:
        if not self.progressive:
            return "constant"
        return f"{self.resolution}px " + ("fade-in" if self.alpha < 1 else "stable")


class Schedule(Protocol):
    reset_optimizer: bool

    def at(self, cur_nimg: int) -> TrainingState: ...

    def prepare_reals(self, img: Tensor, state: TrainingState) -> Tensor: ...


class ConstantSchedule:
    """One resolution, the config's batch and learning rates throughout."""

    reset_optimizer = False

    def __init__(self, config: Any) -> None:
        self.state = TrainingState(config.resolution, 1.0, config.batch, config.lr_g, config.lr_d, 0)

    def at(self, cur_nimg: int) -> TrainingState:
        return self.state

    def prepare_reals(self, img: Tensor, state: TrainingState) -> Tensor:
        return img


class ProgressiveSchedule:
    """Progressive growing from ``start_resolution`` to ``final_resolution`` (see the module docstring).

    ``batch`` and ``lr_g``/``lr_d`` map a resolution to its value; resolutions not listed use the
    defaults. With ``reset_optimizer`` the loop clears Adam's moments whenever a fade-in or a
    stabilisation starts, as ProGAN's ``reset_opt_for_new_lod``.
    """

    def __init__(
        self,
        *,
        start_resolution: int,
        final_resolution: int,
        fade_nimg: int,
        stable_nimg: int,
        batch: Mapping[int, int],
        default_batch: int,
        lr_g: Mapping[int, float],
        lr_d: Mapping[int, float],
        default_lr_g: float,
        default_lr_d: float,
        reset_optimizer: bool = False,
    ) -> None:
        if start_resolution < 4 or start_resolution > final_resolution:
            raise ValueError(f"start_resolution {start_resolution} must be in [4, {final_resolution}]")
        if fade_nimg < 0 or stable_nimg < 0 or fade_nimg + stable_nimg == 0:
            raise ValueError(
                f"need fade_nimg, stable_nimg >= 0 and not both 0, got {fade_nimg}, {stable_nimg}"
            )
        self.start, self.final = start_resolution, final_resolution
        self.levels = int(math.log2(final_resolution // start_resolution))
        self.fade_nimg, self.stable_nimg = fade_nimg, stable_nimg
        self.batch, self.default_batch = dict(batch), default_batch
        self.lr_g, self.lr_d = dict(lr_g), dict(lr_d)
        self.default_lr_g, self.default_lr_d = default_lr_g, default_lr_d
        self.reset_optimizer = reset_optimizer

    def at(self, cur_nimg: int) -> TrainingState:
        level, alpha, segment = self._growth(cur_nimg)
        res = self.start * 2**level
        return TrainingState(
            resolution=res,
            alpha=alpha,
            batch=self.batch.get(res, self.default_batch),
            lr_g=self.lr_g.get(res, self.default_lr_g),
            lr_d=self.lr_d.get(res, self.default_lr_d),
            segment=segment,
            progressive=True,
        )

    def _growth(self, nimg: int) -> tuple[int, float, int]:
        """(levels grown, alpha, segment index) after ``nimg`` images."""
        if nimg < self.stable_nimg or self.levels == 0:
            return 0, 1.0, 0
        period = self.fade_nimg + self.stable_nimg
        step, within = divmod(nimg - self.stable_nimg, period)
        level = step + 1
        if level > self.levels:
            return self.levels, 1.0, 2 * self.levels
        if within < self.fade_nimg:
            return level, within / self.fade_nimg, 2 * level - 1
        return level, 1.0, 2 * level

    def boundaries_nimg(self) -> list[int]:
        """Images seen at which each fade-in starts (one per doubling)."""
        period = self.fade_nimg + self.stable_nimg
        return [self.stable_nimg + k * period for k in range(self.levels)]

    def prepare_reals(self, img: Tensor, state: TrainingState) -> Tensor:
        """Real images at the state's resolution (box-filtered); during a fade-in, blended with their
        2x box-downsampled, nearest-upsampled version by alpha, as ProGAN's training code does."""
        factor = img.shape[-1] // state.resolution
        if factor > 1:
            img = F.avg_pool2d(img, factor)
        if state.alpha < 1:
            coarse = F.avg_pool2d(img, 2).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            img = torch.lerp(coarse, img, state.alpha)
        return img
