"""The training loop of every model family.

The loop asks the config's family (:mod:`stylegan.archs`) for the networks, the loss and the schedule
and never branches on the family's name. Each minibatch runs the loss's phases ``Gmain``, ``Greg``,
``Dmain``, ``Dreg`` (regularisation phases every ``pl_interval`` / ``r1_interval`` minibatches; fused
``Gboth`` / ``Dboth`` without lazy regularisation), updates G_ema and, with ADA, the augmentation
probability. The schedule sets the resolution, fade-in, batch and learning rates by images seen
(constant for StyleGAN2/3, progressive growing for ProGAN and StyleGAN v1). Every ``tick_kimg``
thousand images it reports, checks for divergence and, every ``snapshot_kimg``, writes a checkpoint
from which :func:`train` resumes by itself when called again on the same ``run_dir``.

Gradients are those of the mean loss over the global minibatch, whatever the number of processes and
gradient-accumulation rounds (NVIDIA's code scales them by the number of rounds, which Adam ignores
up to its epsilon). On the CPU a run is bit-for-bit reproducible from its seed, across interruptions.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from stylegan.archs import get_family
from stylegan.augment import AdaController, AugmentPipe
from stylegan.cpu_malloc import keep_freed_memory
from stylegan.devices import resolve_device
from stylegan.generate import image_grid, quantize_images, z_from_seed
from stylegan.losses import lazy_regularization_adam
from stylegan.training.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    first_non_finite,
    restore_rng_state,
)
from stylegan.training.configs import BOOKKEEPING_FIELDS, TrainingConfig, build_networks
from stylegan.training.data import (
    DatasetShape,
    dataset_shape,
    label_probabilities,
    real_batches,
    sample_labels,
)
from stylegan.training.distributed import DistributedContext, all_reduce_gradients
from stylegan.training.ema import ema_beta, update_ema
from stylegan.training.schedule import TrainingState
from stylegan.training.stats import TickStats, merge_phases, peak_memory_mb, reset_peak_memory

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN or infinite; no checkpoint was written after it happened."""


@dataclass
class Phase:
    name: str
    module: nn.Module
    opt: torch.optim.Optimizer
    interval: int
    lazy_interval: int | None  # the lazy-regularisation interval that scales this optimizer's lr and betas


@dataclass
class Counters:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    elapsed_sec: float = 0.0  # training time before this process started


@dataclass
class TickReport:
    """What the progress callback receives at the end of every tick (on rank 0 only)."""

    tick: int
    kimg: float
    metrics: dict[str, float]
    samples: PIL.Image.Image | None = None  # G_ema at the fixed sample seeds, on tick 0 and at checkpoints
    checkpoint: Path | None = None  # written at the end of this tick
    G_ema: nn.Module | None = None  # the live network (not a copy): read it, do not train it
    resumed: bool = False  # the checkpoint's tick, reported again on resuming (train's report_resumed_tick)


@dataclass
class TrainingSummary:
    run_dir: Path
    cur_nimg: int
    ticks: int
    resumed_from: Path | None
    last_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)  # of the last tick
    G: nn.Module | None = None
    D: nn.Module | None = None
    G_ema: nn.Module | None = None


ProgressCallback = Callable[[TickReport], None]


def build_phases(
    config: TrainingConfig, G: nn.Module, D: nn.Module, intervals: dict[str, int | None], state: TrainingState
) -> list[Phase]:
    """One Adam per network; main and lazy-regularisation phases share it, with the paper's lr/beta ratio.

    ``intervals`` is the loss's lazy-regularisation interval per network (None: fused phases). The family
    may split a network's parameters into groups whose ``lr_scale`` multiplies the learning rate.
    """
    family = get_family(config.arch)
    phases = []
    for prefix, module, lr in (("G", G, state.lr_g), ("D", D, state.lr_d)):
        interval = intervals[prefix]
        lr, betas = lazy_regularization_adam(lr, config.betas, interval)
        groups = [
            {**group, "lr": lr * group.get("lr_scale", 1.0)}
            for group in family.param_groups(config, prefix, module)
        ]
        opt = torch.optim.Adam(groups, lr=lr, betas=betas, eps=config.eps)
        if interval:
            phases += [
                Phase(f"{prefix}main", module, opt, 1, interval),
                Phase(f"{prefix}reg", module, opt, interval, interval),
            ]
        else:
            phases += [Phase(f"{prefix}both", module, opt, 1, None)]
    return phases


def train(
    config: TrainingConfig,
    dataset: Dataset | IterableDataset,
    run_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    progress_callback: ProgressCallback | None = None,
    resume: bool = True,
    G: nn.Module | None = None,
    D: nn.Module | None = None,
    G_ema: nn.Module | None = None,
    num_workers: int = 0,
    distributed: DistributedContext | None = None,
    start_nimg: int = 0,
    report_resumed_tick: bool = False,
) -> TrainingSummary:
    """Train until ``config.kimg`` thousand images; resume from ``run_dir``'s latest checkpoint if any.

    ``dataset`` yields ``(uint8 image [C, H, W], float label [c_dim])``; a map-style dataset is
    shuffled here (see :mod:`stylegan.training.data`), an iterable one must shuffle and split across
    ranks itself. ``G``/``D``/``G_ema`` start training from given networks (e.g. imported official
    weights) instead of fresh ones; a checkpoint in ``run_dir`` still takes precedence. ``distributed`` is
    the process group from :func:`~stylegan.training.distributed.init_distributed` (default: one process
    on ``device``). Raises :class:`TrainingDiverged` within one tick of a NaN/Inf.

    With ``resume=False`` the run starts afresh, and ``run_dir`` must not hold checkpoints yet.
    ``start_nimg`` is where a run without checkpoints starts counting images (``resume_kimg`` of a
    fine-tuning run: schedules such as the EMA ramp-up and StyleGAN3's blur see it as already trained).

    A resumed run's summary starts with the metrics of the checkpoint's tick (a finished run resumed has
    them as its final metrics). With ``report_resumed_tick`` the callback first receives that tick again
    (``resumed=True``, with the checkpoint and the restored G_ema), so that records the callback keeps
    catch up with a process that was killed between writing the checkpoint and reporting it. Callbacks
    and sample grids never disturb the training's random generators.
    """
    ctx = distributed or DistributedContext(device=resolve_device(device))
    trainer = _Trainer(config, dataset, Path(run_dir), ctx, G, D, G_ema, num_workers)
    trainer.counters = Counters(cur_nimg=start_nimg, tick_start_nimg=start_nimg)
    trainer.state = trainer.schedule.at(start_nimg)
    if not resume and trainer.checkpoints.paths():
        raise ValueError(
            f"{trainer.checkpoints.directory} already holds checkpoints; resume or use a new run_dir"
        )
    resumed_from = trainer.restore() if resume else None
    return trainer.run(progress_callback, resumed_from, report_resumed_tick)


class _Trainer:
    def __init__(
        self,
        config: TrainingConfig,
        dataset: Dataset | IterableDataset,
        run_dir: Path,
        ctx: DistributedContext,
        G: nn.Module | None,
        D: nn.Module | None,
        G_ema: nn.Module | None,
        num_workers: int,
    ) -> None:
        if config.gpus != ctx.world_size:
            raise ValueError(f"config.gpus={config.gpus} but the job runs {ctx.world_size} process(es)")
        self.config, self.ctx, self.device = config, ctx, ctx.device
        self.dataset, self.run_dir, self.num_workers = dataset, run_dir, num_workers
        self.shape = dataset_shape(dataset)
        if self.shape.resolution != config.resolution:
            raise ValueError(
                f"config.resolution={config.resolution} but the dataset has {self.shape.resolution} px"
            )
        if self.device.type == "cuda":  # as NVIDIA: fast convolutions, exact fp32 matmuls
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if self.device.type == "cpu":  # reuse freed tensor memory instead of page-faulting it back in
            keep_freed_memory()

        _seed_all(config.seed)  # identical fresh networks on every rank
        built_G, built_D = (None, None)
        if G is None or D is None:
            built_G, built_D = build_networks(
                config, img_channels=self.shape.channels, c_dim=self.shape.c_dim
            )
        self.G = (G if G is not None else built_G).train().requires_grad_(False).to(self.device)
        self.D = (D if D is not None else built_D).train().requires_grad_(False).to(self.device)
        G_ema = G_ema if G_ema is not None else copy.deepcopy(self.G)
        self.G_ema = G_ema.eval().requires_grad_(False).to(self.device)
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            _check_network(name, net, self.shape)
        for net in (self.G, self.D, self.G_ema):
            ctx.broadcast_tensors([*net.parameters(), *net.buffers()])

        self.family = get_family(config.arch)
        self.schedule = self.family.schedule(config)
        self.augment_pipe, self.ada = self._build_augmentation()
        self.loss = self.family.build_loss(
            config, self.G, self.D, augment_pipe=self.augment_pipe, schedule=self.schedule
        )
        self.state = self.schedule.at(0)
        self.phases = build_phases(config, self.G, self.D, self.loss.phase_intervals(), self.state)
        self.opt_G, self.opt_D = self.phases[0].opt, self.phases[-1].opt
        self.label_probs = label_probabilities(dataset, self.shape.c_dim)
        # Latents are drawn for the whole global batch from one generator shared by all ranks, so a
        # sample's z does not depend on which rank trains on it.
        self.latent_generator = torch.Generator().manual_seed(config.seed)
        self.counters = Counters()
        self.resumed_metrics: dict[str, float] | None = None
        self.checkpoints = CheckpointManager(run_dir / CHECKPOINT_DIR, keep=config.keep_checkpoints)
        self.stats = TickStats()
        _seed_all(config.seed * ctx.world_size + ctx.rank)  # per-rank noise, mixing and augmentation

    def _build_augmentation(self) -> tuple[AugmentPipe | None, AdaController | None]:
        config = self.config
        if config.aug == "noaug" or (config.aug == "fixed" and config.aug_p == 0):
            return None, None
        pipe = AugmentPipe.from_preset(config.augpipe).to(self.device).requires_grad_(False)
        pipe.p.fill_(config.aug_p)
        if config.aug == "fixed":
            return pipe, None
        ada = AdaController(
            pipe,
            batch_size=config.batch,
            target=config.ada_target,
            interval=config.ada_interval,
            kimg=config.ada_kimg,
            reduce=self.ctx.all_reduce_sum,
        )
        return pipe, ada

    # -- checkpoints ---------------------------------------------------------------------------------

    def restore(self) -> Path | None:
        """Load the newest checkpoint of the run (read by rank 0, sent to the others)."""
        found = self.checkpoints.load_latest() if self.ctx.is_main else None
        path, state = self.ctx.broadcast_object(found) or (None, None)
        if state is None:
            return None
        _check_same_run(path, state["config"], self.config)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if self.ada is not None:
            self.ada.load_state_dict(state["augment"])
        elif self.augment_pipe is not None:
            self.augment_pipe.p.copy_(state["augment"]["p"])
        self.loss.load_state_dict(state["loss"] if "loss" in state else {"pl_mean": state["pl_mean"]})
        self.counters = Counters(**state["counters"])
        self.resumed_metrics = state.get("tick_metrics")  # absent from checkpoints of older versions
        self.state = self.schedule.at(self.counters.cur_nimg)
        self.latent_generator.set_state(state["rng"]["latents"])
        per_rank = state["rng"]["ranks"]
        if len(per_rank) == self.ctx.world_size:
            restore_rng_state(per_rank[self.ctx.rank], self.device)
        else:
            log.warning(
                "checkpoint of %d processes, job of %d: reseeding", len(per_rank), self.ctx.world_size
            )
            entropy = [self.config.seed, self.counters.cur_nimg, self.ctx.rank]
            _seed_all(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        log.info("resumed from %s at kimg %.1f", path, self.counters.cur_nimg / 1000)
        return path

    def _checkpoint_state(self, elapsed_sec: float, tick_metrics: dict[str, float]) -> dict[str, Any]:
        rng = self.ctx.all_gather_object(capture_rng_state(self.device))
        augment = None
        if self.ada is not None:
            augment = self.ada.state_dict()
        elif self.augment_pipe is not None:
            augment = {"p": self.augment_pipe.p.detach().cpu()}
        return {
            "config": self.config.to_dict(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "augment": augment,
            "loss": self.loss.state_dict(),
            # The counters as the next tick starts, which is where a resumed run picks up.
            "counters": {
                **asdict(self.counters),
                "cur_tick": self.counters.cur_tick + 1,
                "tick_start_nimg": self.counters.cur_nimg,
                "elapsed_sec": elapsed_sec,
            },
            "rng": {"latents": self.latent_generator.get_state(), "ranks": rng},
            "tick_metrics": dict(tick_metrics),  # what the tick reported: a resumed run's records need them
        }

    # -- training --------------------------------------------------------------------------------------

    def run(
        self, progress_callback: ProgressCallback | None, resumed_from: Path | None, report_resumed: bool
    ) -> TrainingSummary:
        config, counters = self.config, self.counters
        summary = TrainingSummary(
            self.run_dir, counters.cur_nimg, counters.cur_tick, resumed_from, resumed_from
        )
        if resumed_from is not None and self.resumed_metrics is not None:
            summary.metrics = dict(self.resumed_metrics)
            if report_resumed and progress_callback is not None and self.ctx.is_main:
                kimg = counters.cur_nimg / 1000
                report = TickReport(counters.cur_tick - 1, kimg, dict(self.resumed_metrics), None,
                                    resumed_from, self.G_ema, resumed=True)  # fmt: skip
                with _random_state_kept(self.device):
                    progress_callback(report)
        if counters.cur_nimg >= config.total_nimg:
            log.info("nothing to do: %s already trained on %.1f kimg", self.run_dir, counters.cur_nimg / 1000)
            return self._finish(summary)
        batches, batch_size = self._real_batches(self.state.batch), self.state.batch
        start_time = tick_start_time = time.time()
        base_elapsed = counters.elapsed_sec
        reset_peak_memory(self.device)
        while True:
            self._enter_state(self.schedule.at(counters.cur_nimg))
            if self.state.batch != batch_size:  # a new growth stage with its own minibatch size
                batches, batch_size = self._real_batches(self.state.batch), self.state.batch
            self._step(*next(batches))
            done = counters.cur_nimg >= config.total_nimg
            tick_end = counters.tick_start_nimg + round(config.tick_kimg * 1000)
            if not done and counters.cur_tick != 0 and counters.cur_nimg < tick_end:
                continue
            report = self._end_tick(tick_start_time, base_elapsed + time.time() - start_time, done)
            summary.metrics = report.metrics
            summary.last_checkpoint = report.checkpoint or summary.last_checkpoint
            if progress_callback is not None and self.ctx.is_main:
                with _random_state_kept(self.device):
                    progress_callback(report)
            counters.cur_tick += 1
            counters.tick_start_nimg = counters.cur_nimg
            tick_start_time = time.time()
            reset_peak_memory(self.device)
            if done:
                break
        summary.cur_nimg, summary.ticks = counters.cur_nimg, counters.cur_tick
        return self._finish(summary)

    def _finish(self, summary: TrainingSummary) -> TrainingSummary:
        summary.G, summary.D, summary.G_ema = self.G, self.D, self.G_ema
        return summary

    def _real_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return real_batches(
            self.dataset,
            batch_size=batch_size,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            seed=self.config.seed,
            start_nimg=self.counters.cur_nimg,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _enter_state(self, state: TrainingState) -> None:
        """Apply the schedule's learning rates and, when a growth segment starts, its optimizer reset."""
        if state.segment != self.state.segment and self.schedule.reset_optimizer:
            for opt in (self.opt_G, self.opt_D):
                opt.state.clear()
        if state.batch != self.state.batch and self.ada is not None:
            self.ada.set_batch_size(state.batch)
        if (state.lr_g, state.lr_d) != (self.state.lr_g, self.state.lr_d):
            for phase in self.phases:
                base = state.lr_g if phase.name.startswith("G") else state.lr_d
                lr, _ = lazy_regularization_adam(base, self.config.betas, phase.lazy_interval)
                for group in phase.opt.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
        self.state = state

    def _step(self, real_img: torch.Tensor, real_c: torch.Tensor) -> None:
        """One minibatch: every due phase, the G_ema update and the ADA adjustment."""
        config, ctx, counters, device = self.config, self.ctx, self.counters, self.device
        batch = self.state.batch
        batch_per_gpu = batch // ctx.world_size
        batch_gpu = min(config.batch_gpu, batch_per_gpu)
        if real_img.shape[0] != batch_per_gpu:
            raise ValueError(
                f"the dataset gave {real_img.shape[0]} images, expected {batch_per_gpu} per rank"
            )
        real_img = real_img.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1
        real_img, real_c = real_img.split(batch_gpu), real_c.to(device).split(batch_gpu)
        shape = [len(self.phases), batch]
        all_z = torch.randn([*shape, self.G.z_dim], generator=self.latent_generator)
        all_c = sample_labels(self.label_probs, shape, self.latent_generator)
        mine = slice(ctx.rank * batch_per_gpu, (ctx.rank + 1) * batch_per_gpu)
        all_z, all_c = all_z[:, mine].to(device), all_c[:, mine].to(device)
        num_rounds = len(real_img) * ctx.world_size

        for phase, phase_z, phase_c in zip(self.phases, all_z, all_c, strict=True):
            if counters.batch_idx % phase.interval != 0 or not self.loss.has_work(phase.name):
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            rounds = zip(
                real_img,
                real_c,
                phase_z.split(batch_gpu),
                phase_c.split(batch_gpu),
                strict=True,
            )
            for round_img, round_c, gen_z, gen_c in rounds:
                stats = self.loss.accumulate_gradients(
                    phase.name,
                    round_img,
                    round_c,
                    gen_z,
                    gen_c,
                    gain=phase.interval / num_rounds,
                    cur_nimg=counters.cur_nimg,
                )
                if self.ada is not None and "scores_real" in stats:
                    self.ada.observe(stats["scores_real"])
                self.stats.add(phase.name, stats)
            phase.module.requires_grad_(False)
            all_reduce_gradients(phase.module, ctx)
            for param in phase.module.parameters():
                if param.grad is not None:  # as NVIDIA: tolerate rare fp16 overflows in a gradient
                    torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            phase.opt.step()
            if phase.name in ("Greg", "Gboth") and ctx.is_distributed:
                for running in self.loss.state_dict().values():  # e.g. the path-length mean
                    ctx.all_reduce_sum(running).div_(ctx.world_size)

        update_ema(self.G_ema, self.G, ema_beta(counters.cur_nimg, batch, config.ema_kimg, config.ema_rampup))
        counters.cur_nimg += batch
        counters.batch_idx += 1
        if self.ada is not None:
            self.ada.maybe_adjust(counters.batch_idx)

    def _end_tick(self, tick_start_time: float, elapsed_sec: float, done: bool) -> TickReport:
        config, counters = self.config, self.counters
        tick_sec = time.time() - tick_start_time
        means = self.stats.reduce(self.ctx)
        self.stats.reset()
        kimg = counters.cur_nimg / 1000
        self._check_finite(means, kimg)

        tick_nimg = counters.cur_nimg - counters.tick_start_nimg
        metrics: dict[str, float] = {
            "tick": counters.cur_tick,
            "kimg": kimg,
            "sec_per_tick": tick_sec,
            "sec_per_kimg": tick_sec / (tick_nimg / 1000),
            "img_per_sec": tick_nimg / tick_sec,
            **merge_phases(means),
            **{key: float(value) for key, value in self.loss.state_dict().items() if value.numel() == 1},
            "peak_mem_mb": peak_memory_mb(self.device),
            "total_sec": elapsed_sec,
        }
        # As NVIDIA's Progress/augment: 0 without augmentation, so runs with and without compare in one plot.
        metrics["augment_p"] = float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0
        if self.ada is not None and self.ada.last_rt is not None:
            metrics["ada_rt"] = self.ada.last_rt
        if self.state.progressive:
            metrics["resolution"], metrics["alpha"] = self.state.resolution, self.state.alpha
        metrics["eta_sec"] = (config.total_nimg - counters.cur_nimg) / 1000 * metrics["sec_per_kimg"]

        snapshot_nimg = round(config.snapshot_kimg * 1000)
        checkpoint = None
        if done or counters.cur_nimg // snapshot_nimg > counters.tick_start_nimg // snapshot_nimg:
            state = self._checkpoint_state(elapsed_sec, metrics)
            if self.ctx.is_main:
                checkpoint = self.checkpoints.save(state, counters.cur_nimg)
        samples = None
        if self.ctx.is_main and (counters.cur_tick == 0 or checkpoint is not None):
            with _random_state_kept(self.device):
                samples = self._sample_grid()
        if self.ctx.is_main:
            log.info(_format_tick(metrics))
        return TickReport(counters.cur_tick, kimg, metrics, samples, checkpoint, self.G_ema)

    def _check_finite(self, means: dict[tuple[str, str], float], kimg: float) -> None:
        since = self.counters.tick_start_nimg / 1000
        bad_stats = [f"{name} in phase {phase}" for (phase, name), v in means.items() if not math.isfinite(v)]
        bad_weight = first_non_finite({"G": self.G.state_dict(), "D": self.D.state_dict()})
        if bad_stats or bad_weight:
            found = bad_stats + ([f"weight {bad_weight}"] if bad_weight else [])
            raise TrainingDiverged(
                f"training diverged between kimg {since:.3f} and {kimg:.3f}: non-finite {'; '.join(found)}. "
                f"The last good checkpoint in {self.checkpoints.directory} is kept."
            )

    @torch.no_grad()
    def _sample_grid(self) -> PIL.Image.Image:
        """G_ema at the fixed sample seeds (as the family samples at this point of the schedule), one class
        per seed in turn when conditional."""
        seeds = list(self.config.sample_seeds)
        z = torch.from_numpy(np.stack([z_from_seed(s, self.G_ema.z_dim) for s in seeds])).float()
        c = torch.zeros([len(seeds), self.shape.c_dim])
        if self.shape.c_dim:
            c[torch.arange(len(seeds)), torch.arange(len(seeds)) % self.shape.c_dim] = 1
        chunks = []
        for z_chunk, c_chunk in zip(
            z.split(self.config.batch_gpu), c.split(self.config.batch_gpu), strict=True
        ):
            img = self.family.sample(self.G_ema, z_chunk.to(self.device), c_chunk.to(self.device), self.state)
            chunks.append(quantize_images(img))
        return image_grid(np.concatenate(chunks), cols=math.ceil(math.sqrt(len(seeds))))


# --- helpers -------------------------------------------------------------------------------------------


@contextmanager
def _random_state_kept(device: torch.device) -> Iterator[None]:
    """Run a block (a callback, a sample grid) without it moving the training's random generators: an
    uninterrupted run and one resumed from a checkpoint written before the block must draw the same."""
    state = capture_rng_state(device)
    try:
        yield
    finally:
        restore_rng_state(state, device)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_network(name: str, net: nn.Module, shape: DatasetShape) -> None:
    expected = {"img_resolution": shape.resolution, "img_channels": shape.channels, "c_dim": shape.c_dim}
    for attr, value in expected.items():
        if getattr(net, attr, value) != value:
            raise ValueError(f"{name}.{attr}={getattr(net, attr)} does not fit the dataset ({attr}={value})")


def _check_same_run(path: Path, saved: dict[str, Any], config: TrainingConfig) -> None:
    saved = {"arch": "stylegan2", "arch_options": {}, **saved}  # written before model families existed
    current = config.to_dict()
    changed = sorted(k for k in current if k not in BOOKKEEPING_FIELDS and saved.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"{path} belongs to a different training setup ({details}); use another run_dir")


def _format_duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"


def _format_tick(m: dict[str, float]) -> str:
    parts = [
        f"tick {int(m['tick']):<5d}",
        f"kimg {m['kimg']:<8.1f}",
        f"s/kimg {m['sec_per_kimg']:<7.2f}",
        f"img/s {m['img_per_sec']:<7.1f}",
    ]
    for key, label in (("loss_G", "G"), ("loss_D", "D"), ("r1_penalty", "R1"), ("pl_penalty", "PL")):
        if key in m:
            parts.append(f"{label} {m[key]:.4g}")
    if "augment_p" in m:
        parts.append(f"p {m['augment_p']:.3f}")
    parts += [f"mem {m['peak_mem_mb'] / 1024:.2f} GiB", f"eta {_format_duration(m['eta_sec'])}"]
    return "  ".join(parts)
