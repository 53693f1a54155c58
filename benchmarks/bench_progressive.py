"""Training img/s of the progressive families (ProGAN, StyleGAN v1) at each resolution of their growth,
against the StyleGAN2 step at the same resolution, in one process.

Each row trains the real :func:`stylegan.training.train` loop for a few ticks at one resolution: a
progressive run whose growth starts at that resolution and stays there (no fade-in within the timed
ticks), and a StyleGAN2 run on data of that resolution, with the same batch and channel counts. The
first tick (one minibatch of start-up) is discarded. Ratios above 1 mean the family's step is faster.

    python benchmarks/bench_progressive.py                               # 8..32 px, CPU-sized
    python benchmarks/bench_progressive.py --final 256 --batch 32 --channel-base 16384 --channel-max 512
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from stylegan.training import resolve_config, train
from stylegan.training.data import TensorImageDataset

FAMILIES = {"progan": "paper", "stylegan1": "seed000"}
MINIBATCHES_PER_TICK = 8


def images(resolution: int, batch: int) -> TensorImageDataset:
    data = torch.randint(0, 256, [max(4 * batch, 32), 3, resolution, resolution], dtype=torch.uint8)
    return TensorImageDataset(data)


def img_per_sec(args: argparse.Namespace, arch: str, resolution: int, run_dir: Path) -> float:
    tick_kimg = args.batch * MINIBATCHES_PER_TICK / 1000
    overrides = {
        "batch": args.batch,
        "kimg": args.batch / 1000 + args.ticks * tick_kimg,
        "tick_kimg": tick_kimg,
        "snapshot_kimg": 1e9,
        "sample_seeds": [0],
        "aug": "noaug",
        "channel_base": args.channel_base,
        "channel_max": args.channel_max,
        "z_dim": args.z_dim,
    }
    if arch == "stylegan2":
        config = resolve_config("auto", resolution, 1, {**overrides, "w_dim": args.z_dim, "num_fp16_res": 0})
        data = images(resolution, args.batch)
    else:
        growth = {"start_resolution": resolution, "fade_kimg": 1e6, "stable_kimg": 1e6, "batch_schedule": {}}
        extra = {"w_dim": args.z_dim} if arch == "stylegan1" else {}
        config = resolve_config(FAMILIES[arch], args.final, 1, {**overrides, **extra}, arch=arch,
                                arch_options=growth)  # fmt: skip
        data = images(args.final, args.batch)
    reports = []
    train(config, data, run_dir, device=args.device, progress_callback=reports.append)
    return statistics.fmean(r.metrics["img_per_sec"] for r in reports[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--final", type=int, default=32, help="the data resolution the families grow to")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--ticks", type=int, default=2, help=f"timed ticks of {MINIBATCHES_PER_TICK} minibatches"
    )
    parser.add_argument("--channel-base", type=int, default=1024)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--z-dim", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    resolutions = [8 * 2**k for k in range(args.final.bit_length() - 3)]  # StyleGAN2 starts at 8 px
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}")  # fmt: skip
    print(f"{'res':>5} {'stylegan2':>10} " + " ".join(f"{a:>10} {'ratio':>6}" for a in FAMILIES))
    with tempfile.TemporaryDirectory() as tmp:
        for res in resolutions:
            base = img_per_sec(args, "stylegan2", res, Path(tmp) / f"sg2-{res}")
            cells = []
            for arch in FAMILIES:
                rate = img_per_sec(args, arch, res, Path(tmp) / f"{arch}-{res}")
                cells.append(f"{rate:10.1f} {rate / base:6.2f}")
            print(f"{res:>5} {base:10.1f} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
