"""Speed of the StyleGAN2 networks: our fast ops against baselines, side by side in one process.

Measures images per second for
  - G forward (inference: eval mode, no grad, random noise),
  - D forward (inference),
  - a training step: ``softplus(D(G(z))).mean()`` forward and backward through both networks,
for these variants, run in interleaved rounds (the order alternates every round):
  - ``fast``: our networks with the fast ops (the default; on CPU their feature maps are channels-last),
  - ``ref``: the same networks with the reference formulation of every op (``stylegan.ops.impl``),
    which has the structure of NVIDIA's pure-PyTorch fallback,
  - ``official``: NVIDIA's own ``training/networks.py`` with the same weights, when ``--official-repo``
    points at a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch (not shipped here: its
    licence is non-commercial).
The speed-up of ``fast`` over each baseline is the median of the per-round ratios, which stays steady
when the machine's speed drifts (shared CPUs drift by +-25% over a minute). Also reported: the memory a
training step keeps for backward (tensors saved by autograd), CUDA peak memory, the process' peak RSS,
and the compute roof: the training step's FLOPs (PyTorch's counter: convolutions and matrix products,
forward and backward) against this machine's dense float32 matmul rate, i.e. the most images per second
any implementation of the same arithmetic could reach here, and how close each variant gets.

The default network is the reference configuration (64x64, as ``sg2ada_G64_D64.npz``) with random
weights; speed does not depend on the weight values. ``--npz`` loads a network file instead.

    python benchmarks/bench_networks.py                  # CPU, 2 threads, batch 16
    python benchmarks/bench_networks.py --official-repo ~/src/stylegan2-ada-pytorch
    python benchmarks/bench_networks.py --device cuda --num-fp16-res 2 --channels-last
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stylegan.interop import load_official_npz
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.ops import use_impl

# Throughput the issue quotes for NVIDIA's implementation on the 2-core CPU machine this project
# targets (training step, batch 16). Measured there side by side, NVIDIA's code did 23-29 img/s.
OFFICIAL_CPU_TRAIN_IMG_S = 42.0


@dataclass
class Variant:
    name: str
    G: nn.Module
    D: nn.Module
    impl: str  # formulation of our ops while this variant runs (official code ignores it)


def build_networks(args: argparse.Namespace) -> tuple[Generator, Discriminator]:
    if args.npz:
        return load_official_npz(args.npz)
    common = dict(channel_base=2048, channel_max=128, conv_clamp=256, num_fp16_res=args.num_fp16_res)
    G = Generator(
        z_dim=128,
        c_dim=0,
        w_dim=128,
        img_resolution=64,
        img_channels=3,
        mapping_kwargs=dict(num_layers=4),
        synthesis_kwargs=dict(common, architecture="skip", fp16_channels_last=args.channels_last),
    )
    D = Discriminator(
        c_dim=0,
        img_resolution=64,
        img_channels=3,
        architecture="resnet",
        block_kwargs=dict(fp16_channels_last=args.channels_last),
        **common,
    )
    return G, D


def official_networks(repo: Path, G: Generator, D: Discriminator) -> tuple[nn.Module, nn.Module]:
    """NVIDIA's networks from a user's checkout, built from our networks' kwargs and weights (our
    constructor arguments and parameter names are NVIDIA's)."""
    if not (repo / "training" / "networks.py").is_file():
        raise SystemExit(
            f"--official-repo {repo}: no training/networks.py there (a stylegan2-ada-pytorch checkout)"
        )
    sys.path.insert(0, str(repo))
    networks = importlib.import_module("training.networks")
    official_G = networks.Generator(**G.init_kwargs)
    official_D = networks.Discriminator(**D.init_kwargs)
    official_G.load_state_dict(G.state_dict())
    official_D.load_state_dict(D.state_dict())
    return official_G, official_D


def saved_tensor_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` and count the bytes of distinct storages autograd saves for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def counted_flops(fn: Callable[[], None]) -> int:
    """FLOPs of one call of ``fn`` as PyTorch's counter sees them: convolutions and matrix products,
    forward and backward (elementwise work is not counted, so a roof built on this is generous)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flop_rate(
    device: torch.device, sync: Callable[[], None], size: int = 2048, repeats: int = 8
) -> float:
    """The best float32 FLOP/s of a dense ``size``-square matrix product here: the rate convolutions
    lowered to GEMM-like kernels approach at best."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats):  # the best of several: the first runs also warm up
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--rounds", type=int, default=15, help="timed rounds per phase (each runs every variant)"
    )
    parser.add_argument("--npz", default=None, help="load G and D from a reference-format npz")
    parser.add_argument("--official-repo", type=Path, help="a stylegan2-ada-pytorch checkout to compare with")
    parser.add_argument("--num-fp16-res", type=int, default=0, help="float16 resolutions (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last for the fp16 blocks")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    G, D = build_networks(args)
    variants = [Variant("fast", G, D, "fast"), Variant("ref", G, D, "ref")]
    if args.official_repo:
        variants.append(
            Variant("official", *official_networks(args.official_repo.expanduser(), G, D), "fast")
        )
    for v in variants:
        v.G.to(device)
        v.D.to(device)
    z = torch.randn([args.batch, G.z_dim], device=device)
    c = torch.zeros([args.batch, G.c_dim], device=device)
    img = G.eval()(z, c).detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def g_forward(v: Variant) -> None:
        with torch.no_grad():
            v.G.eval()(z, c)

    def d_forward(v: Variant) -> None:
        with torch.no_grad():
            v.D.eval()(img, c)

    def train_loss(v: Variant) -> torch.Tensor:
        v.G.train()
        v.D.train()
        v.G.zero_grad(set_to_none=True)
        v.D.zero_grad(set_to_none=True)
        return F.softplus(v.D(v.G(z, c), c)).mean()

    def train_step(v: Variant) -> None:
        train_loss(v).backward()

    phases: dict[str, Callable[[Variant], None]] = {
        "G forward": g_forward,
        "D forward": d_forward,
        "G+D train step": train_step,
    }
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} rounds={args.rounds} "
        f"num_fp16_res={args.num_fp16_res} channels_last={args.channels_last} "
        f"load average={os.getloadavg()[0]:.1f} (other processes on the cores distort CPU timings)"
    )
    train_img_s: dict[str, float] = {}
    for phase, run in phases.items():
        times: dict[str, list[float]] = {v.name: [] for v in variants}
        cuda_peak: dict[str, int] = {}
        for v in variants * 2:  # warm-up: allocator, kernel selection
            with use_impl(v.impl):
                run(v)
        for round_index in range(args.rounds):
            for v in variants if round_index % 2 == 0 else variants[::-1]:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with use_impl(v.impl):
                    sync()
                    start = time.perf_counter()
                    run(v)
                    sync()
                    times[v.name].append(time.perf_counter() - start)
                if device.type == "cuda":
                    cuda_peak[v.name] = torch.cuda.max_memory_allocated(device)
        img_s = {name: args.batch / statistics.median(t) for name, t in times.items()}
        line = f"{phase:>16}: " + "   ".join(f"{name} {rate:6.1f} img/s" for name, rate in img_s.items())
        for baseline in [v.name for v in variants[1:]]:
            ratios = [b / f for b, f in zip(times[baseline], times["fast"], strict=True)]
            low, _, high = statistics.quantiles(ratios, n=4)
            line += f"   fast/{baseline} x{statistics.median(ratios):.2f} (IQR {low:.2f}-{high:.2f})"
        if device.type == "cuda":
            line += "   peak MiB " + " ".join(f"{n} {b / 2**20:.0f}" for n, b in cuda_peak.items())
        print(line, flush=True)
        if phase == "G+D train step":
            train_img_s = img_s

    saved_bytes = {}
    for v in variants:  # untimed: the hooks add Python work to every saved tensor
        with use_impl(v.impl):
            loss, saved_bytes[v.name] = saved_tensor_bytes(lambda: train_loss(v))  # noqa: B023
            loss.backward()
    print(
        "saved for backward per train step: "
        + ", ".join(f"{n} {b / 2**20:.0f} MiB" for n, b in saved_bytes.items())
    )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")

    with use_impl("fast"):
        step_flops = counted_flops(lambda: train_step(variants[0]))
    flop_rate = matmul_flop_rate(device, sync)
    roof_img_s = args.batch * flop_rate / step_flops
    print(
        f"compute roof: the fast train step is {step_flops / 1e9:.2f} GFLOP and float32 matmul runs at "
        f"{flop_rate / 1e9:.0f} GFLOP/s here, so this arithmetic cannot exceed {roof_img_s:.1f} img/s; "
        + ", ".join(f"{name} reaches {rate / roof_img_s:.0%}" for name, rate in train_img_s.items())
    )
    if device.type == "cpu":
        target = 1.5 * OFFICIAL_CPU_TRAIN_IMG_S
        print(
            f"train step vs the {OFFICIAL_CPU_TRAIN_IMG_S:.0f} img/s quoted for NVIDIA's code on the target "
            f"2-core machine: x{train_img_s['fast'] / OFFICIAL_CPU_TRAIN_IMG_S:.2f}; 1.5x of that "
            f"({target:.0f} img/s) is {target / roof_img_s:.0%} of this machine's compute roof"
        )


if __name__ == "__main__":
    main()
