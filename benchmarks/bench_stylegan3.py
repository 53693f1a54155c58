"""StyleGAN3 training speed: SG3-T and SG3-R against StyleGAN2 at the same resolution, and our alias-free
generator against NVIDIA's reference (non-CUDA-kernel) formulation, in one process.

1. Training loop: :func:`stylegan.training.train` on random images for a few ticks per config, the same
   batch and widths; the first tick (one minibatch of start-up) is discarded. Ratios are against
   StyleGAN2.
2. With ``--official-repo`` (a NVlabs/stylegan3 checkout): generator forward + backward of the same
   weights through NVIDIA's ``training/networks_stylegan3.py`` (on the CPU its filtered lrelu and
   upfirdn2d take their reference paths) and ours, alternating in paired rounds; the median per-round
   ratio is printed (above 1: ours is faster). On CUDA both use their fast paths.

    python benchmarks/bench_stylegan3.py
    python benchmarks/bench_stylegan3.py --official-repo ~/src/stylegan3 --resolution 64
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from stylegan.training import resolve_config, train
from stylegan.training.configs import build_networks
from stylegan.training.data import TensorImageDataset

CONFIGS = {"stylegan2": ("auto", {}), "stylegan3-t": ("stylegan3-t", {"config": "t"}),
           "stylegan3-r": ("stylegan3-r", {"config": "r"})}  # fmt: skip
MINIBATCHES_PER_TICK = 4


def config_for(args: argparse.Namespace, name: str, **extra):
    cfg, options = CONFIGS[name]
    overrides = {
        "batch": args.batch, "batch_gpu": args.batch, "z_dim": args.z_dim, "w_dim": args.z_dim,
        "channel_base": args.channel_base, "channel_max": args.channel_max, "num_fp16_res": 0,
        "sample_seeds": [0], "aug": "noaug", "snapshot_kimg": 1e9, **extra,
    }  # fmt: skip
    arch = "stylegan2" if name == "stylegan2" else "stylegan3"
    return resolve_config(cfg, args.resolution, 1, overrides, arch=arch, arch_options=options)


def train_img_per_sec(args: argparse.Namespace, name: str, run_dir: Path) -> float:
    tick_kimg = args.batch * MINIBATCHES_PER_TICK / 1000
    config = config_for(args, name, kimg=args.batch / 1000 + args.ticks * tick_kimg, tick_kimg=tick_kimg)
    images = torch.randint(0, 256, [4 * args.batch, 3, args.resolution, args.resolution], dtype=torch.uint8)
    reports = []
    train(config, TensorImageDataset(images), run_dir, device=args.device, progress_callback=reports.append)
    return statistics.fmean(r.metrics["img_per_sec"] for r in reports[1:])


def official_generator(repo: Path, G: nn.Module) -> nn.Module:
    """NVIDIA's StyleGAN3 generator from a user's checkout, with our generator's kwargs and weights."""
    if not (repo / "training" / "networks_stylegan3.py").is_file():
        raise SystemExit(
            f"--official-repo {repo}: no training/networks_stylegan3.py (a NVlabs/stylegan3 checkout)"
        )
    sys.path.insert(0, str(repo))
    networks = importlib.import_module("training.networks_stylegan3")
    official = networks.Generator(**G.init_kwargs)
    official.load_state_dict(G.state_dict())
    return official


def generator_step_seconds(G: nn.Module, z: torch.Tensor, c: torch.Tensor) -> float:
    start = time.perf_counter()
    G.zero_grad(set_to_none=True)
    G(z, c).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--ticks", type=int, default=2, help=f"timed ticks of {MINIBATCHES_PER_TICK} minibatches"
    )
    parser.add_argument("--channel-base", type=int, default=2048)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--z-dim", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds against NVIDIA's code")
    parser.add_argument("--official-repo", type=Path, help="a NVlabs/stylegan3 checkout to compare with")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.resolution} px, batch {args.batch}")  # fmt: skip

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            rates[name] = train_img_per_sec(args, name, Path(tmp) / name)
    print(f"{'training loop':>14} {'img/s':>8} {'vs stylegan2':>13}")
    for name, rate in rates.items():
        print(f"{name:>14} {rate:8.2f} {rate / rates['stylegan2']:13.2f}")

    if args.official_repo is None:
        return
    print(f"\n{'G fwd+bwd':>14} {'ours s':>8} {'NVIDIA s':>9} {'ours/NVIDIA x':>14}")
    for name in ("stylegan3-t", "stylegan3-r"):
        ours, _ = build_networks(config_for(args, name), img_channels=3, c_dim=0)
        theirs = official_generator(args.official_repo.expanduser(), ours)
        z, c = torch.randn(args.batch, args.z_dim), torch.zeros(args.batch, 0)
        generator_step_seconds(ours, z, c), generator_step_seconds(theirs, z, c)  # warm-up
        pairs = [
            (generator_step_seconds(ours, z, c), generator_step_seconds(theirs, z, c))
            for _ in range(args.rounds)
        ]
        ratio = statistics.median(t / o for o, t in pairs)
        print(f"{name:>14} {statistics.median(o for o, _ in pairs):8.3f} "
              f"{statistics.median(t for _, t in pairs):9.3f} {ratio:14.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
