"""Speed of the StyleGAN2 networks: fast ops against the reference formulation, in one process.

Measures images per second for
  - G forward (inference: eval mode, no grad, random noise),
  - D forward (inference),
  - a training step: ``softplus(D(G(z))).mean()`` forward and backward through both networks,
with the ops' ``fast`` and ``ref`` formulations (see ``stylegan.ops.impl``) interleaved, and prints
the speed-up of fast over ref. Also reports the memory a training step keeps for backward (tensors
saved by autograd), CUDA peak memory when on CUDA, and the process' peak RSS.

The default network is the reference configuration (64x64, as ``sg2ada_G64_D64.npz``) with random
weights; speed does not depend on the weight values. ``--npz`` loads a network file instead.

    python benchmarks/bench_networks.py                  # CPU, 2 threads, batch 16
    python benchmarks/bench_networks.py --device cuda --num-fp16-res 2 --channels-last
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from stylegan.interop import load_official_npz
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.ops import use_impl

# Throughput of NVIDIA's implementation (pure PyTorch fallback ops) on the 2-core CPU machine this
# project targets, for the training step below at batch 16 (figure from the issue).
OFFICIAL_CPU_TRAIN_IMG_S = 42.0


def build_networks(args: argparse.Namespace) -> tuple[Generator, Discriminator]:
    if args.npz:
        G, D = load_official_npz(args.npz)
        return G, D
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per formulation and phase")
    parser.add_argument("--npz", default=None, help="load G and D from a reference-format npz")
    parser.add_argument("--num-fp16-res", type=int, default=0, help="float16 resolutions (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last for the fp16 blocks")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    G, D = build_networks(args)
    G, D = G.to(device), D.to(device)
    z = torch.randn([args.batch, G.z_dim], device=device)
    c = torch.zeros([args.batch, G.c_dim], device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def g_forward() -> None:
        with torch.no_grad():
            G.eval()(z, c)

    img = G.eval()(z, c).detach()

    def d_forward() -> None:
        with torch.no_grad():
            D.eval()(img, c)

    def train_loss() -> torch.Tensor:
        G.train()
        D.train()
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        return F.softplus(D(G(z, c), c)).mean()

    def train_step(impl: str) -> None:
        train_loss().backward()

    phases: dict[str, Callable[[str], None]] = {
        "G forward": lambda impl: g_forward(),
        "D forward": lambda impl: d_forward(),
        "G+D train step": train_step,
    }
    impls = ("ref", "fast")
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} "
        f"num_fp16_res={args.num_fp16_res} channels_last={args.channels_last} "
        f"load average={os.getloadavg()[0]:.1f} (CPU timings are unreliable when other processes keep "
        f"the cores busy: multi-threaded ops then wait on descheduled threads)"
    )
    results: dict[str, dict[str, float]] = {}
    cuda_peak: dict[tuple[str, str], int] = {}
    for phase, run in phases.items():
        times: dict[str, list[float]] = {impl: [] for impl in impls}
        for impl in impls:  # warm-up (allocator, kernel selection)
            with use_impl(impl):
                run(impl)
        for _ in range(args.repeats):
            for impl in impls:  # interleaved, so load changes hit both alike
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with use_impl(impl):
                    sync()
                    start = time.perf_counter()
                    run(impl)
                    sync()
                    times[impl].append(time.perf_counter() - start)
                if device.type == "cuda":
                    cuda_peak[phase, impl] = torch.cuda.max_memory_allocated(device)
        results[phase] = {impl: args.batch / statistics.median(t) for impl, t in times.items()}
        ref, fast = results[phase]["ref"], results[phase]["fast"]
        line = f"{phase:>16}: ref {ref:8.1f} img/s   fast {fast:8.1f} img/s   speed-up x{fast / ref:.2f}"
        if device.type == "cuda":
            line += "   peak MiB ref {:.0f} fast {:.0f}".format(
                cuda_peak[phase, "ref"] / 2**20, cuda_peak[phase, "fast"] / 2**20
            )
        print(line, flush=True)

    saved_bytes = {}
    for impl in impls:  # untimed: the hooks add Python work to every saved tensor
        with use_impl(impl):
            loss, saved_bytes[impl] = saved_tensor_bytes(train_loss)
            loss.backward()
    print(
        f"saved for backward per train step: ref {saved_bytes['ref'] / 2**20:.0f} MiB, "
        f"fast {saved_bytes['fast'] / 2**20:.0f} MiB"
    )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    if device.type == "cpu":
        fast = results["G+D train step"]["fast"]
        print(
            f"train step vs the official implementation's {OFFICIAL_CPU_TRAIN_IMG_S:.0f} img/s on the target "
            f"2-core machine: x{fast / OFFICIAL_CPU_TRAIN_IMG_S:.2f} (meaningful on that machine only)"
        )


if __name__ == "__main__":
    main()
