"""Training throughput and peak memory of the StyleGAN2-ADA loop, against baselines in the same process.

Every variant runs the real :func:`stylegan.training.train` on random images. Ticks are 16 minibatches,
one R1 interval, so each timed tick carries its share of the lazy regularisation; the first tick
(one minibatch of start-up) is discarded. With ``--repeats`` the variants run in turns and the median
is reported, which evens out a busy machine. Variants:

* ``full``: lazy R1 (every 16 minibatches) and path length (every 4), ADA ``bgc`` at p = 0.2;
* ``no-reg``: no R1 and no path length regularisation: the cost of the regularisers;
* ``eager-reg``: both regularisers on every minibatch (``Gboth``/``Dboth``): what lazy regularisation saves;
* ``no-aug``: no augmentation: the cost of the ADA pipeline;
* ``ref-ops``: the full step with the reference formulation of every op (``stylegan.ops.impl``, the
  structure of NVIDIA's pure-PyTorch code): what the fast ops gain in the whole loop.

Peak memory is ``torch.cuda.max_memory_allocated`` per variant on CUDA; on the CPU it is the process's
peak RSS so far, which only grows from one variant to the next.

    python benchmarks/bench_train.py                       # CPU-sized defaults
    python benchmarks/bench_train.py --cfg paper256 --resolution 256 --batch 64 --full-size --ticks 4  # GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from stylegan.ops import use_impl
from stylegan.training import TickReport, resolve_config, train
from stylegan.training.data import TensorImageDataset

VARIANTS = {  # name: (config overrides, ops formulation)
    "full": ({}, "fast"),
    "no-reg": ({"gamma": 0, "pl_weight": 0}, "fast"),
    "eager-reg": ({"r1_interval": 0, "pl_interval": 0}, "fast"),
    "no-aug": ({"aug": "noaug"}, "fast"),
    "ref-ops": ({}, "ref"),
}


MINIBATCHES_PER_TICK = 16


def run_variant(args: argparse.Namespace, name: str, run_dir: Path) -> dict[str, float]:
    tick_kimg = args.batch * MINIBATCHES_PER_TICK / 1000
    overrides = {
        "batch": args.batch,
        "kimg": args.batch / 1000 + args.ticks * tick_kimg,
        "tick_kimg": tick_kimg,
        "snapshot_kimg": 1e9,  # only the final checkpoint
        "aug": "fixed",
        "aug_p": 0.2,
        "sample_seeds": [0],
        **({} if args.full_size else {"channel_base": args.channel_base, "channel_max": args.channel_max}),
        **VARIANTS[name][0],
    }
    config = resolve_config(args.cfg, args.resolution, 1, overrides)
    images = torch.randint(
        0, 256, [max(args.batch * 4, 64), 3, args.resolution, args.resolution], dtype=torch.uint8
    )
    reports: list[TickReport] = []
    with use_impl(VARIANTS[name][1]):
        train(config, TensorImageDataset(images), run_dir, device=args.device,
              progress_callback=reports.append, num_workers=0)  # fmt: skip
    timed = [r.metrics for r in reports[1:]]  # tick 0 is one minibatch of start-up
    return {
        "img_per_sec": statistics.fmean(m["img_per_sec"] for m in timed),
        "sec_per_kimg": statistics.fmean(m["sec_per_kimg"] for m in timed),
        "peak_mem_mb": max(m["peak_mem_mb"] for m in timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg", default="auto")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--ticks", type=int, default=2, help=f"timed ticks of {MINIBATCHES_PER_TICK} minibatches"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per variant, in turns; the median counts"
    )
    parser.add_argument("--channel-base", type=int, default=1024)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--full-size", action="store_true", help="use the preset's channel counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in args.variants:
                runs[name].append(run_variant(args, name, Path(tmp) / f"{name}-{repeat}"))
                print(f"{name:>10} run {repeat}: {runs[name][-1]['img_per_sec']:8.2f} img/s", flush=True)
    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in ("img_per_sec", "sec_per_kimg")}
        | {"peak_mem_mb": max(r["peak_mem_mb"] for r in rs)}
        for name, rs in runs.items()
    }

    base = results[args.variants[0]]
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"\n{args.cfg} {args.resolution}px batch {args.batch} on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")  # fmt: skip
    print(f"{'variant':>10} {'img/s':>9} {'vs ' + args.variants[0]:>9} {'s/kimg':>9} {'peak MiB':>9}")
    for name, r in results.items():
        ratio = r["img_per_sec"] / base["img_per_sec"]
        speed = f"{r['img_per_sec']:9.1f} {ratio:9.2f} {r['sec_per_kimg']:9.2f}"
        print(f"{name:>10} {speed} {r['peak_mem_mb']:9.0f}")


if __name__ == "__main__":
    main()
