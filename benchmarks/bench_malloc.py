"""CPU training with glibc's default malloc thresholds against :mod:`stylegan.cpu_malloc`'s.

An allocator setting holds for a whole process, so each measurement is a child process running the
real training loop (as ``bench_train.py``'s ``full`` variant: ADA, lazy R1 and path length) with one
setting or the other. Children run in pairs, in alternating order, and the speed-up is the median of
the per-pair ratios, which evens out a machine whose speed drifts. Per setting it reports img/s, minor
page faults per training image (the cost the setting removes) and the child's peak RSS.

    python benchmarks/bench_malloc.py                    # 64 px reference-size network, batch 16
    python benchmarks/bench_malloc.py --pairs 5 --ticks 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_train import MINIBATCHES_PER_TICK, run_variant

from stylegan.cpu_malloc import OPT_OUT_VARIABLE

SETTINGS = ("glibc-default", "keep-freed")


def child(args: argparse.Namespace) -> None:
    """Train in this process and print one JSON line of measurements."""
    torch.set_num_threads(args.threads)
    train_args = argparse.Namespace(
        cfg="auto", resolution=args.resolution, batch=args.batch, ticks=args.ticks, full_size=False,
        channel_base=args.channel_base, channel_max=args.channel_max, device="cpu",
    )  # fmt: skip
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with tempfile.TemporaryDirectory() as tmp:
        result = run_variant(train_args, "full", Path(tmp))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    images = args.batch * (1 + args.ticks * MINIBATCHES_PER_TICK)  # tick 0 is one minibatch
    result["faults_per_img"] = (usage.ru_minflt - faults_before) / images
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


def run_child(args: argparse.Namespace, setting: str) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env[OPT_OUT_VARIABLE] = "0" if setting == "glibc-default" else "1"
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="child processes per setting")
    parser.add_argument(
        "--ticks", type=int, default=2, help=f"timed ticks of {MINIBATCHES_PER_TICK} minibatches per child"
    )
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channel-base", type=int, default=2048)
    parser.add_argument("--channel-max", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    for pair in range(args.pairs):
        for setting in SETTINGS if pair % 2 == 0 else SETTINGS[::-1]:
            runs[setting].append(run_child(args, setting))
            r = runs[setting][-1]
            print(f"pair {pair} {setting:>13}: {r['img_per_sec']:6.2f} img/s "
                  f"{r['faults_per_img']:8.0f} faults/img", flush=True)  # fmt: skip

    speedups = [
        tuned["img_per_sec"] / default["img_per_sec"]
        for default, tuned in zip(runs["glibc-default"], runs["keep-freed"], strict=True)
    ]
    print(f"\n{args.resolution}px batch {args.batch}, channels {args.channel_base}/{args.channel_max}, "
          f"{args.threads} threads, {args.pairs} pairs of {args.ticks}-tick runs")  # fmt: skip
    print(f"{'setting':>13} {'img/s':>8} {'faults/img':>11} {'peak RSS MiB':>13}")
    for setting, rs in runs.items():
        print(
            f"{setting:>13} {statistics.median(r['img_per_sec'] for r in rs):8.2f} "
            f"{statistics.median(r['faults_per_img'] for r in rs):11.0f} "
            f"{max(r['peak_rss_mb'] for r in rs):13.0f}"
        )
    print(f"keep-freed / glibc-default: x{statistics.median(speedups):.2f} (per pair: "
          + ", ".join(f"{s:.2f}" for s in speedups) + ")")  # fmt: skip


if __name__ == "__main__":
    main()
