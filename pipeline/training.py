"""The train stage's work: params -> a StyleGAN2-ADA training run, its curves, MLflow logging, outputs.

Checkpoints for resume live outside the DVC outputs, in ``<train.checkpoint_root>/<run key>/<owner>/``,
where the key hashes the training config and the shard index and the owner is the DVC experiment or the
workspace (:mod:`pipeline.run_folders`); the stage's outputs (final G_ema, its config, the curves and
the final tick's metrics) stay plain, run-cacheable DVC outputs. Rerunning the stage after an
interruption (kill -9 included) finds the folder and resumes from its latest checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.family_params import check_family_params
from pipeline.locks import exclusive_folder
from pipeline.params import Params
from pipeline.pretrained import Pretrained, initialise, load_pretrained
from pipeline.run_folders import CURVES, MLFLOW_RUN_ID_FILE, owner_name, seed_from_siblings
from pipeline.tracking import PipelineRun, start_run
from pipeline.training_metrics import FEATURE_CACHE, TrainingMetrics, exported_generator
from stylegan.archs import get_family
from stylegan.dataset import ShardDataset
from stylegan.files import atomic_write_json, atomic_write_text
from stylegan.serialization import save_network
from stylegan.training import (
    DistributedContext,
    TickReport,
    TrainingConfig,
    build_networks,
    init_distributed,
    resolve_config,
    run_key,
    shutdown_distributed,
    train,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutputs:
    """Where the train stage writes (the DVC outs of `dvc.yaml`)."""

    generator: Path = Path("models/G_ema.safetensors")
    generator_config: Path = Path("models/G_ema.json")
    curves: Path = Path("plots/train.tsv")
    metrics: Path = Path("metrics/train.json")


#: Params of the `model` and `train` sections that are not fields of :class:`TrainingConfig`.
NOT_CONFIG_FIELDS = frozenset({"resume_from", "resume_kimg"}) | frozenset(
    {"arch", "conditional", "cfg", "gpus", "mirror", "device", "workers", "checkpoint_root"}
    | {"metrics", "metric_kimg", "export"}  # what is measured during training, and which G_ema is written
)


#: `train` keys whose schema defaults are StyleGAN2's, which other presets change (cifar, StyleGAN3 and
#: the progressive families turn path length and mixing off): the preset decides unless the file sets them.
PRESET_REGULARIZATION = frozenset({"pl_weight", "pl_interval", "r1_interval", "style_mixing_prob"})


def training_config(params: Params, resolution: int, pretrained: Pretrained | None = None) -> TrainingConfig:
    """The params' `model` and `train` sections as a :class:`TrainingConfig` of `model.arch`'s family.

    None keeps the preset's value, and so does an unset key of :data:`PRESET_REGULARIZATION`; the
    family's own keys become its ``arch_options``; `train` keys the family does not use (refused when set,
    see :func:`check_family_params`) stay out of the config.
    """
    family = get_family(params.model.arch)
    model = params.model.model_dump()
    train = {
        k: v
        for k, v in params.train.model_dump().items()
        if k not in family.unused_fields
        and (k not in PRESET_REGULARIZATION or k in params.train.model_fields_set)
    }
    options = {k: v for k, v in model.items() if k in family.options and v is not None}
    overrides = {
        k: v for k, v in {**model, **train}.items() if k not in NOT_CONFIG_FIELDS and k not in family.options
    }
    if pretrained is not None:  # as NVIDIA's train.py --resume, unless the params file says otherwise
        given = params.train.model_fields_set
        overrides.update({k: v for k, v in _resume_defaults(pretrained).items() if k not in given})
        if "blur_init_sigma" in family.options and options.get("blur_init_sigma") is None:
            options["blur_init_sigma"] = 0.0
    cfg = params.train.cfg or family.default_cfg(options)
    config = resolve_config(
        cfg, resolution, gpus=params.train.gpus, overrides=overrides, arch=family.name, arch_options=options
    )
    if pretrained is not None and "ema_rampup" not in params.train.model_fields_set:
        config = dataclasses.replace(config, ema_rampup=None)  # a trained G_ema needs no ramp-up
    return config


def dataset_fingerprint(shards_dir: Path) -> str:
    """The shard index's sha256: it lists every shard's checksum, so it identifies the data."""
    return hashlib.sha256((shards_dir / "index.json").read_bytes()).hexdigest()


def _resume_defaults(pretrained: Pretrained) -> dict[str, Any]:
    """ADA reacts faster and starts from the source's augmentation strength (the EMA ramp-up goes too)."""
    defaults: dict[str, Any] = {"ada_kimg": 100}
    if pretrained.augment_p is not None:
        defaults["aug_p"] = pretrained.augment_p
    return defaults


def checkpoint_dir(
    params: Params, config: TrainingConfig, shards_dir: Path, pretrained: Pretrained | None = None
) -> Path:
    """``<checkpoint_root>/<run key>/<owner>`` (see :mod:`pipeline.run_folders`); a relative root is taken
    from the DVC project root (DVC_ROOT), so that `dvc exp run --temp` runs find the workspace's runs."""
    root = Path(params.train.checkpoint_root).expanduser()
    if not root.is_absolute():
        root = Path(os.environ.get("DVC_ROOT", ".")) / root
    identity = config.identity()
    if pretrained is not None:  # the same config fine-tuned from another source is another run
        identity |= {"resume_from": pretrained.sha256, "resume_kimg": params.train.resume_kimg}
    return root / run_key(identity, dataset_fingerprint(shards_dir)) / owner_name()


def torchrun_command(gpus: int, argv: list[str]) -> list[str]:
    """`argv` (this stage's own command line) started on `gpus` processes by torchrun. Several machines
    join through torchrun's rendezvous when NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT are set."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}"]
    if "NNODES" in os.environ:
        command += [
            f"--nnodes={os.environ['NNODES']}",
            f"--node_rank={os.environ.get('NODE_RANK', '0')}",
            f"--master_addr={os.environ['MASTER_ADDR']}",
            f"--master_port={os.environ.get('MASTER_PORT', '29500')}",
        ]
    else:
        command.append("--standalone")
    return command + argv


class CurveWriter:
    """Per-tick training curves as a TSV in the run folder, so they survive an interruption. A resumed
    run repeats the ticks after its last checkpoint; their first rows are dropped when they come again.
    The file is rewritten atomically: a kill leaves the previous version, never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = read_curves(path) if path.exists() else []

    def append(self, kimg: float, metrics: dict[str, float]) -> None:
        self.rows = [row for row in self.rows if float(row["kimg"]) < kimg - 1e-9]
        self.rows.append({**metrics, "kimg": f"{kimg:.3f}"})
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, columns, delimiter="\t", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue())

    def row(self, kimg: float) -> dict[str, str]:
        """The values of the row at `kimg` (without the kimg), or {}."""
        found = [row for row in self.rows if abs(float(row["kimg"]) - kimg) < 1e-9]
        return {key: value for key, value in found[-1].items() if key != "kimg"} if found else {}


def read_curves(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def network_sizes(config: TrainingConfig, *, img_channels: int, c_dim: int) -> dict[str, int]:
    """Parameters of the config's generator and discriminator, ``{"G": n, "D": n}`` (built and dropped)."""
    with torch.random.fork_rng():  # building draws initial weights; the caller's RNG stays as it was
        G, D = build_networks(config, img_channels=img_channels, c_dim=c_dim)
    return {name: sum(p.numel() for p in net.parameters()) for name, net in (("G", G), ("D", D))}


def _on_tick(run: PipelineRun, curves: CurveWriter, measured: TrainingMetrics, new_run: bool):
    def callback(report: TickReport) -> None:
        if report.resumed and new_run:  # a new MLflow run continuing these checkpoints gets their history
            for row in curves.rows:
                if float(row["kimg"]) < report.kimg - 1e-9:
                    run.log_tick(_numbers(row), float(row["kimg"]))
        values = measured.on_tick(report.kimg, report.checkpoint, report.G_ema)
        kept = curves.row(report.kimg) if report.resumed else {}  # the checkpoint's tick again: keep its row
        curves.append(report.kimg, {**kept, **report.metrics, **values})
        run.log_tick({**report.metrics, **values}, report.kimg)
        if report.samples is not None:
            run.log_image(report.samples, key="samples", kimg=report.kimg)

    return callback


def _numbers(row: dict[str, str]) -> dict[str, float]:
    """The numbers of a curves row (empty cells are metrics not measured at that tick)."""
    return {key: float(value) for key, value in row.items() if key != "kimg" and value not in ("", None)}


def run_training(params: Params, shards_dir: Path, outputs: TrainOutputs = TrainOutputs()) -> dict[str, Any]:
    """Train (or resume) on the shards, log to MLflow, and write the stage's outputs.

    With ``train.gpus > 1`` the calling command is started again under torchrun; each process then
    trains its share of every batch, and rank 0 alone logs and writes."""
    t = params.train
    check_family_params(params)
    if t.gpus > 1 and "LOCAL_RANK" not in os.environ:
        subprocess.run(torchrun_command(t.gpus, sys.argv), check=True)
        return json.loads(outputs.metrics.read_text())
    ctx = init_distributed(t.device)
    try:
        return _train_here(params, shards_dir, outputs, ctx)
    finally:
        shutdown_distributed()


def _train_here(
    params: Params, shards_dir: Path, outputs: TrainOutputs, ctx: DistributedContext
) -> dict[str, Any]:
    t = params.train
    dataset = ShardDataset(
        shards_dir,
        seed=t.seed,
        xflip=t.mirror,
        use_labels=params.model.conditional,
        infinite=True,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    pretrained = load_pretrained(t.resume_from) if t.resume_from else None
    config = training_config(params, dataset.resolution, pretrained)
    run_dir = checkpoint_dir(params, config, shards_dir, pretrained)
    start = dict(start_nimg=round(t.resume_kimg * 1000))
    if pretrained is not None:
        fresh = build_networks(config, img_channels=dataset.num_channels, c_dim=dataset.label_dim)
        start.update(zip(("G", "D", "G_ema"), initialise(pretrained, *fresh), strict=True))
        log.info("fine-tuning from %s (sha256 %s)", t.resume_from, pretrained.sha256[:12])
    if not ctx.is_main:
        ctx.barrier()  # rank 0 has the folder and its starting checkpoint
        summary = train(config, dataset, run_dir, num_workers=t.workers, distributed=ctx, **start)
        return {"kimg": summary.cur_nimg / 1000, "rank": ctx.rank}
    # One training per folder at a time: the same experiment started twice waits for itself (pipeline.locks).
    with exclusive_folder(run_dir):
        seed_from_siblings(run_dir, max_nimg=config.total_nimg)
        ctx.barrier()
        return _train_main(params, shards_dir, outputs, ctx, dataset, config, run_dir, start)


def _train_main(
    params: Params,
    shards_dir: Path,
    outputs: TrainOutputs,
    ctx: DistributedContext,
    dataset: ShardDataset,
    config: TrainingConfig,
    run_dir: Path,
    start: dict[str, Any],
) -> dict[str, Any]:
    t = params.train
    log.info("checkpoints for resume: %s", run_dir)
    sizes = network_sizes(config, img_channels=dataset.num_channels, c_dim=dataset.label_dim)
    log.info("networks: G %s parameters, D %s parameters", f"{sizes['G']:,}", f"{sizes['D']:,}")
    curves = CurveWriter(run_dir / CURVES)
    measured = TrainingMetrics(
        t.metrics,
        run_dir=run_dir,
        shards_dir=shards_dir,
        total_kimg=config.kimg,
        every_kimg=t.metric_kimg,
        xflip=t.mirror,
        conditional=params.model.conditional,
        device=ctx.device,
        feature_cache_dir=Path(os.environ.get("DVC_ROOT", ".")) / FEATURE_CACHE,
        dataset_key=dataset_fingerprint(shards_dir),
    )
    run_id_file = run_dir / MLFLOW_RUN_ID_FILE
    resume_run_id = run_id_file.read_text().strip() if run_id_file.exists() else None

    # A tracking server that goes away mid-training stops nothing (pipeline.tracking_offline).
    with start_run(params, resume_run_id=resume_run_id, keep_going_offline=True) as run:
        atomic_write_text(run_id_file, run.info.run_id)
        for name, count in sizes.items():
            run.client.set_tag(run.info.run_id, f"{name}_parameters", str(count))
        summary = train(
            config,
            dataset,
            run_dir,
            progress_callback=_on_tick(run, curves, measured, new_run=run.info.run_id != resume_run_id),
            num_workers=t.workers,
            distributed=ctx,
            report_resumed_tick=True,  # a kill between a checkpoint and its records: they catch up
            **start,
        )
        kimg = summary.cur_nimg / 1000
        final_values = measured.finish(summary.G_ema, kimg)
        if final_values:  # measured after the loop: into the last tick's row
            last = curves.rows[-1] if curves.rows and float(curves.rows[-1]["kimg"]) >= kimg - 1e-9 else {}
            curves.append(kimg, {**{k: v for k, v in last.items() if k != "kimg"}, **final_values})
            run.log_tick(final_values, kimg)
        G_export, export = exported_generator(summary.G_ema, measured, t.export)
        for path in (outputs.generator, outputs.curves, outputs.metrics):
            path.parent.mkdir(parents=True, exist_ok=True)
        save_network(
            outputs.generator,
            G_export,
            extra_metadata={"family": config.arch, "training_config": json.dumps(config.to_dict())},
        )
        atomic_write_json(
            outputs.generator_config,
            {
                "family": config.arch,
                "training": config.to_dict(),
                "kimg": summary.cur_nimg / 1000,
                "parameters": sizes,
                "export": export,
            },
        )
        atomic_write_text(outputs.curves, (run_dir / CURVES).read_text())
        final = {"kimg": kimg, "ticks": summary.ticks, **summary.metrics, **measured.summary()}
        final.update({"G_parameters": sizes["G"], "D_parameters": sizes["D"]})
        atomic_write_json(outputs.metrics, final)
        run.log_artifact(outputs.generator, "model")
        run.log_artifact(outputs.generator_config, "model")
    return final
