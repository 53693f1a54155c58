"""Training throughput and peak memory of the StyleGAN2-ADA loop, against baselines in the same process.

Every variant runs the real :func:`stylegan.training.train` on random images; the first tick (start-up,
first-call kernel selection) is discarded and the rest averaged. Variants:

* ``full``: lazy R1 (every 16 minibatches) and path length (every 4), ADA ``bgc`` at p = 0.2;
* ``no-reg``: no R1 and no path length regularisation: the cost of the regularisers;
* ``eager-reg``: both regularisers on every minibatch (``Gboth``/``Dboth``): what lazy regularisation saves;
* ``no-aug``: no augmentation: the cost of the ADA pipeline.

Peak memory is ``torch.cuda.max_memory_allocated`` per variant on CUDA; on the CPU it is the process's
peak RSS so far, which only grows from one variant to the next.

    python benchmarks/bench_train.py                       # CPU-sized defaults
    python benchmarks/bench_train.py --resolution 256 --batch 32 --cfg paper256 --kimg 2   # a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from stylegan.training import TickReport, resolve_config, train
from stylegan.training.data import TensorImageDataset

VARIANTS = {
    "full": {},
    "no-reg": {"gamma": 0, "pl_weight": 0},
    "eager-reg": {"r1_interval": 0, "pl_interval": 0},
    "no-aug": {"aug": "noaug"},
}


def run_variant(args: argparse.Namespace, name: str, run_dir: Path) -> dict[str, float]:
    overrides = {
        "batch": args.batch,
        "kimg": args.kimg,
        "tick_kimg": args.kimg / (args.ticks + 1),
        "snapshot_kimg": 1e9,  # only the final checkpoint
        "aug": "fixed",
        "aug_p": 0.2,
        "sample_seeds": [0],
        **({} if args.full_size else {"channel_base": args.channel_base, "channel_max": args.channel_max}),
        **VARIANTS[name],
    }
    config = resolve_config(args.cfg, args.resolution, 1, overrides)
    images = torch.randint(0, 256, [max(args.batch * 4, 64), 3, args.resolution, args.resolution], dtype=torch.uint8)
    reports: list[TickReport] = []
    train(config, TensorImageDataset(images), run_dir, device=args.device, progress_callback=reports.append,
          num_workers=0)  # fmt: skip
    timed = [r.metrics for r in reports[1:]]  # tick 0 is one minibatch of start-up
    return {
        "img_per_sec": statistics.fmean(m["img_per_sec"] for m in timed),
        "sec_per_kimg": statistics.fmean(m["sec_per_kimg"] for m in timed),
        "peak_mem_mb": max(m["peak_mem_mb"] for m in timed),
        "ticks": len(timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg", default="auto")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--kimg", type=float, default=0.4, help="images per variant, in thousands")
    parser.add_argument("--ticks", type=int, default=4, help="timed ticks per variant")
    parser.add_argument("--channel-base", type=int, default=2048)
    parser.add_argument("--channel-max", type=int, default=128)
    parser.add_argument("--full-size", action="store_true", help="use the preset's channel counts")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            results[name] = run_variant(args, name, Path(tmp) / name)
            print(f"{name:>10}: {results[name]['img_per_sec']:8.1f} img/s", flush=True)

    base = results[args.variants[0]]
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"\n{args.cfg} {args.resolution}px batch {args.batch} on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")  # fmt: skip
    print(f"{'variant':>10} {'img/s':>9} {'vs ' + args.variants[0]:>9} {'s/kimg':>9} {'peak MiB':>9}")
    for name, r in results.items():
        ratio = r["img_per_sec"] / base["img_per_sec"]
        print(f"{name:>10} {r['img_per_sec']:9.1f} {ratio:9.2f} {r['sec_per_kimg']:9.2f} {r['peak_mem_mb']:9.0f}")


if __name__ == "__main__":
    main()
