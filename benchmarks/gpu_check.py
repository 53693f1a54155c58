"""GPU check: StyleGAN2 training speed, memory, precision and efficiency here, as JSON and a text summary.

Run it through ``benchmarks/gpu_check.sh`` (which also saves ``nvidia-smi`` and bounds the wall time). For
each resolution (default 64 and 256 px, with the ADA paper's 256 px networks: channel_base 16384, 512
channels at most, an 8-layer mapping, z and w of 512) it measures, with the same weights throughout:

* the training step of ``benchmarks/bench_networks.py``: ``softplus(D(G(z))).mean()`` forward and backward
  through both networks (the arithmetic of a training step's main phases), in images per second, as
  - ``fp32``: float32 everywhere (TF32 off, as the training loop sets it),
  - ``mixed``: float16 in the 4 highest-resolution blocks of G and D (``num_fp16_res=4``, NVIDIA's mixed
    precision, with its ``conv_clamp=256``),
  - ``mixed_cl``: the same with channels-last float16 activations (NVIDIA's ``fp16_channels_last``),
  - ``fp32_compiled`` and ``mixed_cl_compiled``: those under ``torch.compile`` (their compile time apart),
  - ``official_fp32`` and ``official_mixed``: NVIDIA's ``training/networks.py`` from the checkout given with
    ``--official-repo``, run in the same rounds as ours, with the ratio of the two per round;
* ``loop``: the real training loop (:func:`stylegan.training.train`: lazy R1 and path length
  regularisation, ADA at p = 0.2, G_ema, Adam) on random images, in mixed precision;
* peak memory of each (CUDA's ``max_memory_allocated``; on the CPU the process's peak RSS so far);
* mixed precision against float32: the largest and mean absolute difference of G's images (in [-1, 1])
  and of D's logits, for the same inputs and weights;
* the fraction of the machine's peak FLOP rate each step reaches: FLOPs of a step (PyTorch's counter:
  convolutions and matrix products, forward and backward) times steps per second, against the dense
  matrix-product rate measured here (float32 for ``fp32*``, float16 for the mixed variants).

Every measurement is written to ``<out>/gpu_check.json`` as soon as it is made; ``<out>/gpu_check.txt`` is
the summary. Variants that would start after ``--budget-s`` seconds are recorded as skipped.

    OUT=out benchmarks/gpu_check.sh [--official-repo ~/src/stylegan2-ada-pytorch]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_networks import counted_flops, official_networks  # benchmarks/ is this script's folder
from torch import nn

from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.training import TickReport, resolve_config, train
from stylegan.training.data import TensorImageDataset

MIXED_FP16_RES = 4


@dataclass(frozen=True)
class Variant:
    name: str
    mixed: bool = False
    channels_last: bool = False
    compiled: bool = False
    official: bool = False


EAGER = (Variant("fp32"), Variant("mixed", mixed=True), Variant("mixed_cl", mixed=True, channels_last=True))
COMPILED = (
    Variant("fp32_compiled", compiled=True),
    Variant("mixed_cl_compiled", mixed=True, channels_last=True, compiled=True),
)
OFFICIAL = (Variant("official_fp32", official=True), Variant("official_mixed", mixed=True, official=True))


class Report:
    """The results so far, rewritten to ``gpu_check.json`` after every measurement."""

    def __init__(self, out: Path, args: argparse.Namespace, device: torch.device) -> None:
        self.out, self.start = out, time.perf_counter()
        self.data: dict[str, Any] = {
            "machine": describe(device),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "roof": {},
            "resolutions": {},
            "skipped": [],
        }
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.out / "gpu_check.json")


def describe(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def build(args: argparse.Namespace, resolution: int, variant: Variant) -> tuple[Generator, Discriminator]:
    common = dict(
        channel_base=args.channel_base,
        channel_max=args.channel_max,
        num_fp16_res=MIXED_FP16_RES if variant.mixed else 0,
        conv_clamp=256,
    )
    G = Generator(
        z_dim=args.z_dim,
        c_dim=0,
        w_dim=args.z_dim,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=args.mapping_layers),
        synthesis_kwargs=dict(common, fp16_channels_last=variant.channels_last),
    )
    D = Discriminator(
        c_dim=0,
        img_resolution=resolution,
        img_channels=3,
        block_kwargs=dict(fp16_channels_last=variant.channels_last),
        **common,
    )
    return G, D


class Step:
    """One variant's networks (sharing the reference weights) and its training step."""

    def __init__(self, args, resolution, variant, weights, device, z, c) -> None:
        G, D = build(args, resolution, variant)
        G.load_state_dict(weights[0])
        D.load_state_dict(weights[1])
        if variant.official:
            G, D = official_networks(args.official_repo.expanduser(), G, D)
        self.G, self.D = G.to(device).train(), D.to(device).train()
        self.G_call: nn.Module = self.G
        self.D_call: nn.Module = self.D
        if variant.compiled:
            self.G_call = torch.compile(self.G, backend=args.compile_backend)
            self.D_call = torch.compile(self.D, backend=args.compile_backend)
        self.variant, self.z, self.c = variant, z, c

    def loss(self) -> torch.Tensor:
        self.G.zero_grad(set_to_none=True)
        self.D.zero_grad(set_to_none=True)
        return F.softplus(self.D_call(self.G_call(self.z, self.c), self.c)).mean()

    def __call__(self) -> None:
        self.loss().backward()


def timed(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, sync, repeats: int = 5) -> float:
    """The best dense ``size``-square matrix-product rate in ``dtype`` here, FLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, sync) for _ in range(repeats))
    return 2 * size**3 / best


def precision_difference(args, resolution, weights, device, z, c) -> dict[str, float]:
    """Mixed precision against float32: the same weights and inputs, G's images and D's logits."""
    outputs = {}
    for variant in (Variant("fp32"), Variant("mixed", mixed=True)):
        G, D = build(args, resolution, variant)
        G.load_state_dict(weights[0])
        D.load_state_dict(weights[1])
        G, D = G.to(device).eval(), D.to(device).eval()
        with torch.no_grad():
            images = G(z, c, noise_mode="const").float()
            real = torch.linspace(-1, 1, images.numel(), device=device).reshape(images.shape)
            outputs[variant.name] = (images, D(real, c).float())
    (g32, d32), (g16, d16) = outputs["fp32"], outputs["mixed"]
    return {
        "G_max_abs": float((g16 - g32).abs().max()),
        "G_mean_abs": float((g16 - g32).abs().mean()),
        "D_max_abs": float((d16 - d32).abs().max()),
        "D_logit_scale": float(d32.abs().mean()),
        "fp16_used": device.type == "cuda",  # NVIDIA's networks run float16 on CUDA only
    }


def measure_eager(steps: list[Step], args, device, sync) -> dict[str, dict[str, Any]]:
    """Interleaved rounds (the order alternates), the median per variant; ours vs NVIDIA's per round."""
    times: dict[str, list[float]] = {s.variant.name: [] for s in steps}
    peaks: dict[str, float] = {}
    for step in steps * args.warmup:
        step()
    for index in range(args.steps):
        for step in steps if index % 2 == 0 else steps[::-1]:
            reset_peak(device)
            times[step.variant.name].append(timed(step, sync))
            peaks[step.variant.name] = max(peaks.get(step.variant.name, 0.0), peak_memory_mb(device))
    results = {
        name: {"step_s": statistics.median(t), "peak_mem_mb": peaks[name]} for name, t in times.items()
    }
    for ours, official in (("fp32", "official_fp32"), ("mixed", "official_mixed")):
        if official in times:
            ratios = [b / a for a, b in zip(times[ours], times[official], strict=True)]
            results[ours]["speedup_vs_official"] = statistics.median(ratios)
    return results


def measure_compiled(step: Step, args, device, sync) -> dict[str, Any]:
    reset_peak(device)
    compile_s = timed(step, sync)  # the first call compiles forward and backward
    for _ in range(max(args.warmup - 1, 0)):
        step()
    times = [timed(step, sync) for _ in range(args.steps)]
    return {"step_s": statistics.median(times), "peak_mem_mb": peak_memory_mb(device), "compile_s": compile_s}


def measure_loop(args, resolution: int, device: torch.device) -> dict[str, Any]:
    """The real training loop, mixed precision, on random images: 2 timed ticks of 16 minibatches."""
    tick_kimg = args.batch * 16 / 1000
    overrides = {
        "batch": args.batch,
        "kimg": args.batch / 1000 + 2 * tick_kimg,
        "tick_kimg": tick_kimg,
        "snapshot_kimg": 1e9,
        "aug": "fixed",
        "aug_p": 0.2,
        "sample_seeds": [0],
        "channel_base": args.channel_base,
        "channel_max": args.channel_max,
        "mapping_layers": args.mapping_layers,
        "z_dim": args.z_dim,
        "w_dim": args.z_dim,
        "num_fp16_res": MIXED_FP16_RES,
    }
    config = resolve_config("paper256", resolution, 1, overrides)
    images = torch.randint(0, 256, [max(4 * args.batch, 64), 3, resolution, resolution], dtype=torch.uint8)
    reports: list[TickReport] = []
    with tempfile.TemporaryDirectory() as run_dir:
        train(config, TensorImageDataset(images), run_dir, device=device, progress_callback=reports.append)
    timed_ticks = [r.metrics for r in reports[1:]]  # tick 0 is one minibatch of start-up
    img_s = statistics.fmean(m["img_per_sec"] for m in timed_ticks)
    return {"img_per_sec": img_s, "peak_mem_mb": max(m["peak_mem_mb"] for m in timed_ticks)}


@dataclass
class Setup:
    """One resolution's reference weights and inputs, shared by its variants."""

    resolution: int
    weights: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]
    z: torch.Tensor
    c: torch.Tensor
    entry: dict[str, Any]


def check_eager(args, resolution: int, device, sync, report: Report) -> Setup:
    """The eager variants in interleaved rounds, mixed precision against float32, the training loop."""
    entry: dict[str, Any] = {"batch": args.batch, "variants": {}}
    report.data["resolutions"][str(resolution)] = entry
    torch.manual_seed(0)
    reference = build(args, resolution, Variant("fp32"))
    weights = (reference[0].state_dict(), reference[1].state_dict())
    entry["parameters"] = {"G": _count(reference[0]), "D": _count(reference[1])}
    setup = Setup(
        resolution,
        weights,
        torch.randn([args.batch, args.z_dim], device=device),
        torch.zeros([args.batch, 0], device=device),
        entry,
    )
    eager = [*EAGER, *(OFFICIAL if args.official_repo else ())]
    steps = [Step(args, resolution, v, weights, device, setup.z, setup.c) for v in eager]
    entry["step_gflop"] = counted_flops(steps[0]) / 1e9
    entry["variants"].update(measure_eager(steps, args, device, sync))
    del steps
    _rates(entry, report)
    entry["mixed_vs_fp32"] = precision_difference(args, resolution, weights, device, setup.z, setup.c)
    report.save()
    if report.elapsed() > args.budget_s:
        report.data["skipped"].append(f"{resolution}px loop: past the {args.budget_s} s budget")
    else:
        entry["variants"]["loop"] = measure_loop(args, resolution, device)
    report.save()
    return setup


def check_compiled(args, setup: Setup, device, sync, report: Report) -> None:
    """The compiled variants (compiling takes long: they come after every eager measurement)."""
    for variant in COMPILED:
        if report.elapsed() > args.budget_s:
            report.data["skipped"].append(
                f"{setup.resolution}px {variant.name}: past the {args.budget_s} s budget"
            )
            continue
        try:
            step = Step(args, setup.resolution, variant, setup.weights, device, setup.z, setup.c)
            setup.entry["variants"][variant.name] = measure_compiled(step, args, device, sync)
        except Exception as err:  # noqa: BLE001  (a compiler failure is a finding, not the end)
            setup.entry["variants"][variant.name] = {"error": f"{type(err).__name__}: {err}"[:500]}
        _rates(setup.entry, report)


def _rates(entry: dict[str, Any], report: Report) -> None:
    """Images per second and the share of the peak FLOP rate of every timed step; then save."""
    for name, result in entry["variants"].items():
        if "step_s" in result:
            result["img_per_sec"] = entry["batch"] / result["step_s"]
            roof = report.data["roof"]["fp16_flops" if "mixed" in name else "fp32_flops"]
            result["fraction_of_peak"] = entry["step_gflop"] * 1e9 / result["step_s"] / roof
    report.save()


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def summary(data: dict[str, Any]) -> str:
    machine = data["machine"]
    where = machine.get("gpu") or f"CPU ({machine['cpu']}, {machine['threads']} threads)"
    roof = data["roof"]
    lines = [
        f"GPU check on {where}, torch {machine['torch']}, {data['elapsed_s']:.0f} s",
        f"dense matmul roof (measured here): fp32 {roof['fp32_flops'] / 1e12:.2f} TFLOP/s, "
        f"{roof['half_dtype']} {roof['fp16_flops'] / 1e12:.2f} TFLOP/s",
    ]
    for resolution, entry in data["resolutions"].items():
        params = entry["parameters"]
        lines += [
            "",
            f"{resolution} px, batch {entry['batch']}: G {params['G'] / 1e6:.2f} M, "
            f"D {params['D'] / 1e6:.2f} M parameters, a step is {entry['step_gflop']:.1f} GFLOP",
            f"  {'variant':<18} {'img/s':>9} {'peak MiB':>9} {'of peak':>8}  notes",
        ]
        for name, r in entry["variants"].items():
            if "error" in r:
                lines.append(f"  {name:<18} {'failed':>9}  {r['error'][:120]}")
                continue
            notes = []
            if "speedup_vs_official" in r:
                notes.append(f"x{r['speedup_vs_official']:.2f} vs NVIDIA's code")
            if "compile_s" in r:
                notes.append(f"compiled in {r['compile_s']:.0f} s")
            share = f"{r['fraction_of_peak']:.1%}" if "fraction_of_peak" in r else "-"
            lines.append(
                f"  {name:<18} {r['img_per_sec']:9.1f} {r['peak_mem_mb']:9.0f} {share:>8}  {', '.join(notes)}"
            )
        diff = entry.get("mixed_vs_fp32")
        if diff:
            used = "" if diff["fp16_used"] else " (float16 runs on CUDA only: no difference expected here)"
            lines.append(
                f"  mixed vs fp32: G images max |diff| {diff['G_max_abs']:.3g}, "
                f"mean {diff['G_mean_abs']:.3g}; D logits max |diff| {diff['D_max_abs']:.3g} "
                f"(mean |logit| {diff['D_logit_scale']:.3g}){used}"
            )
    lines += [f"skipped: {item}" for item in data["skipped"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.txt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channel-base", type=int, default=16384)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--mapping-layers", type=int, default=8)
    parser.add_argument("--z-dim", type=int, default=512, help="z and w dimensions")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend, or none")
    parser.add_argument("--matmul-size", type=int, default=None, help="default: 8192 on CUDA, 512 on CPU")
    parser.add_argument(
        "--budget-s", type=float, default=400, help="start no variant after this many seconds"
    )
    parser.add_argument("--official-repo", type=Path, help="a stylegan2-ada-pytorch checkout to compare with")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":  # as the training loop: fast convolutions, exact float32 products
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    report = Report(args.out, args, device)
    size = args.matmul_size or (8192 if device.type == "cuda" else 512)
    half = torch.float16 if device.type == "cuda" else torch.bfloat16  # CPUs multiply float16 slowly
    report.data["roof"] = {
        "fp32_flops": matmul_rate(device, torch.float32, size, sync),
        "fp16_flops": matmul_rate(device, half, size, sync),
        "half_dtype": str(half).removeprefix("torch."),
        "matmul_size": size,
    }
    report.save()
    setups = []
    for resolution in args.resolutions:
        if report.elapsed() > args.budget_s:
            report.data["skipped"].append(f"{resolution}px: past the {args.budget_s} s budget")
            continue
        setups.append(check_eager(args, resolution, device, sync, report))
    if args.compile_backend != "none":
        for setup in setups:
            check_compiled(args, setup, device, sync, report)
    report.save()
    text = summary(report.data)
    (args.out / "gpu_check.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    sys.exit(main())
