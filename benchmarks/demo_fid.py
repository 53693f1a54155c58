"""How fast the embedded demo learns: FID against training wall time for candidate settings of params.yaml.

Each candidate is params.yaml with some keys overridden (``train.lr_g=0.005`` ...). It trains from scratch
on the demo data set (drawn and sharded as the DAG does it, once, into ``--work``) for ``--seconds`` of
wall time, as the train stage does (the torch threads and data-loader workers of params.yaml), keeping a
copy of G_ema at each of ``--marks`` (the first tick that ends after the mark): run it on otherwise idle
cores. Then, untimed, each copy draws a grid of 32 samples (``<work>/samples-<candidate>-<mark>s.png``)
and its FID is measured with the evaluate stage's sample counts (``eval.num_gen`` generated against
``eval.num_real`` real images, x-flips as ``train.mirror``), and, with ``--final-gen``, the last copy's
also at ``--final-gen`` / ``--final-real``. The real images' features are cached.

It prints one row per candidate: the kimg reached and the FID at each mark, the wall time it took here,
and with ``--floor`` the FID of real images against other real images at the same counts (the floor of
FID at these sample sizes).

Not one of `make bench`'s ``bench_*.py``: each candidate takes several minutes of training and metrics.

    python benchmarks/demo_fid.py --final-gen 2000 --floor   # params.yaml and before, as in the README
    python benchmarks/demo_fid.py --candidate 'b16=train.batch=16' --only b16
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.params import Params, parse_params
from pipeline.report.hardware import cpu_model
from pipeline.shards import prepare_shards
from pipeline.training import dataset_fingerprint, training_config
from stylegan.dataset import ShardDataset
from stylegan.generate import Sampler, image_grid
from stylegan.metrics import compute_metrics, fid_from_features, inception_features
from stylegan.training import TickReport, train

ROOT = Path(__file__).resolve().parents[1]

# name: params overrides (dotted keys) on top of params.yaml. "before" is the params.yaml of the issue that
# asked for this (StyleGAN2's rates at batch 16, path length regularisation, style mixing and ADA).
CANDIDATES: dict[str, dict[str, Any]] = {
    "params.yaml": {},
    "before": {
        "train.batch": 16,
        "train.lr_g": 0.0025,
        "train.lr_d": 0.0025,
        "train.pl_weight": 2.0,
        "train.style_mixing_prob": 0.9,
        "train.aug": "ada",
    },
}


class _EnoughTraining(Exception):
    """Raised from the progress callback once the time budget is spent: ends the run early."""


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        section = raw
        for part in path:
            section = section.setdefault(part, {})
        section[leaf] = value
    return raw


def demo_shards(params: Params, work: Path) -> Path:
    """The demo data as the download and prepare stages make it (align: none), made once per settings."""
    d, p = params.data.demo, params.prepare
    shards = work / f"shards-{d.count}-{d.resolution}-{d.seed}-{p.resolution}-{p.filter}"
    if not (shards / "index.json").is_file():
        raw = work / f"raw-{d.count}-{d.resolution}-{d.seed}"
        if not (raw / "manifest.jsonl").is_file():
            generate_demo(raw, count=d.count, resolution=d.resolution, seed=d.seed, labels=d.labels)
        prepare_shards(raw, read_manifest(raw), shards, resolution=p.resolution, filter=p.filter,
                       crop=p.crop, shard_size=p.shard_size)  # fmt: skip
    return shards


def train_for(params: Params, shards: Path, seconds: float, marks: list[float]) -> list[dict[str, Any]]:
    """Train from scratch for ``seconds`` of wall time; a copy of G_ema at each mark."""
    t = params.train
    dataset = ShardDataset(shards, seed=t.seed, xflip=t.mirror, use_labels=params.model.conditional,
                           infinite=True)  # fmt: skip
    config = training_config(params, dataset.resolution)
    config = dataclasses.replace(config, kimg=1e6, snapshot_kimg=1e6, tick_kimg=0.5)  # stopped by time
    snapshots: list[dict[str, Any]] = []
    pending = sorted(marks)
    started = time.perf_counter()

    def callback(report: TickReport) -> None:
        elapsed = time.perf_counter() - started
        while pending and elapsed >= pending[0]:
            mark = pending.pop(0)
            snapshots.append(
                {
                    "mark": mark,
                    "seconds": elapsed,
                    "wall": report.metrics["total_sec"],
                    "kimg": report.kimg,
                    "G": copy.deepcopy(report.G_ema).cpu(),
                }
            )
        if elapsed >= seconds:
            raise _EnoughTraining

    with tempfile.TemporaryDirectory() as run_dir:
        try:
            train(config, dataset, run_dir, device="cpu", progress_callback=callback, num_workers=t.workers)
        except _EnoughTraining:
            pass
    return snapshots


def fid(params: Params, G: torch.nn.Module, shards: Path, cache: Path, num_gen: int, num_real: int) -> float:
    dataset = ShardDataset(shards, shuffle=False, use_labels=params.model.conditional)
    [result] = compute_metrics(
        ["fid50k_full"],  # the FID definition; the counts are given explicitly and reported as such
        G,
        real_images=(images for images, _ in dataset.iterate_batches(params.eval.batch)),
        num_gen=num_gen,
        max_real=num_real,
        batch_size=params.eval.batch,
        seed=params.eval.seed,
        device="cpu",
        xflip=params.train.mirror,
        label_sampler=None if not params.model.conditional else _labels(dataset),
        feature_cache_dir=str(cache),
        dataset_key=dataset_fingerprint(shards),
        progress=False,
    )
    return result["value"]


def _labels(dataset: ShardDataset):
    probs = dataset.label_distribution()
    eye = np.eye(len(probs), dtype=np.float32)
    return lambda n, rng: eye[rng.choice(len(probs), size=n, p=probs)]


def real_floor(params: Params, shards: Path, count: int) -> float:
    """FID of the first ``count`` real images (as the metric reads them) against ``count`` others
    (fid-helper's Inception, which the metrics use unless NVIDIA's file is on disk)."""
    images = torch.cat([batch for batch, _ in ShardDataset(shards, shuffle=False).iterate_batches(500)])
    if len(images) < 2 * count:
        raise ValueError(f"{len(images)} images: too few for two disjoint sets of {count}")
    first, other = images[:count], images[-count:]
    if params.train.mirror:  # as the metric reads them: each batch then its mirror image
        half = first[: count // 2]
        first = torch.cat([half, half.flip(3)])
    return fid_from_features(*(inception_features(x, device="cpu", progress=False) for x in (first, other)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--seconds", type=float, default=300, help="training time per candidate")
    parser.add_argument("--marks", type=float, nargs="+", default=[150, 300], help="seconds")
    parser.add_argument("--only", nargs="+", help="candidates to run (default: all)")
    parser.add_argument("--candidate", action="append", default=[], help="NAME=key=value,key=value")
    parser.add_argument("--final-gen", type=int, default=0, help="also FID of the last copy at these counts")
    parser.add_argument("--final-real", type=int, default=2000)
    parser.add_argument("--floor", action="store_true", help="also FID of real against other real images")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache/demo_fid")
    args = parser.parse_args()

    candidates = dict(CANDIDATES)
    for spec in args.candidate:
        name, _, assignments = spec.partition("=")
        candidates[name] = {
            key: yaml.safe_load(value) for key, value in (a.split("=", 1) for a in assignments.split(","))
        }
    names = args.only or list(candidates)
    raw = yaml.safe_load(args.params.read_text())
    base = parse_params(raw)
    shards = demo_shards(base, args.work)
    cache = args.work / "features"
    counts = (base.eval.num_gen, base.eval.num_real or 0)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores ({cpu_model()}); torch threads "
          f"{torch.get_num_threads()}; time = wall time; FID {counts[0]} generated / {counts[1]} real",
          flush=True)  # fmt: skip

    rows = []
    for name in names:
        params = parse_params(with_overrides(raw, candidates[name]))
        start = time.perf_counter()
        snapshots = train_for(params, shards, args.seconds, args.marks)
        row = {"name": name, "train_s": time.perf_counter() - start, "points": []}
        for snap in snapshots:
            value = fid(params, snap["G"], shards, cache, params.eval.num_gen, params.eval.num_real or 0)
            grid = image_grid(
                Sampler(snap["G"]).generate(range(32), class_idx=0 if snap["G"].c_dim else None), 8
            )
            grid.save(args.work / f"samples-{name}-{snap['mark']:.0f}s.png")
            row["points"].append((snap["seconds"], snap["kimg"], value))
            row["wall"] = snap["wall"]
        if args.final_gen and snapshots:
            row["final"] = fid(params, snapshots[-1]["G"], shards, cache, args.final_gen, args.final_real)
        rows.append(row)
        points = "  ".join(f"{s:.0f}s/{k:.1f}kimg: {v:.1f}" for s, k, v in row["points"])
        final = f"  final {args.final_gen}/{args.final_real}: {row['final']:.1f}" if "final" in row else ""
        wall = f"{row.get('wall', 0):.0f} s wall"
        print(f"{name}: {points}{final}  [{wall}, load {os.getloadavg()[0]:.1f}]", flush=True)

    header = "| candidate | overrides | " + " | ".join(f"FID at {m:.0f} s (kimg)" for m in args.marks)
    header += f" | FID {args.final_gen}/{args.final_real} |" if args.final_gen else " |"
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [f"{v:.1f} ({k:.1f})" for _, k, v in row["points"]]
        cells += ["-"] * (len(args.marks) - len(cells))
        overrides = ", ".join(f"{k}={v}" for k, v in candidates[row["name"]].items()) or "params.yaml"
        line = f"| {row['name']} | {overrides} | " + " | ".join(cells)
        line += f" | {row['final']:.1f} |" if "final" in row else (" | - |" if args.final_gen else " |")
        print(line)
    if args.floor:
        floor = real_floor(base, shards, counts[1])
        print(f"\nreal vs other real images, {counts[1]}/{counts[1]}: FID {floor:.1f}")


if __name__ == "__main__":
    main()
