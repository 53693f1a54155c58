"""Speed of the metric building blocks against straightforward baselines, timed in one process.

    python benchmarks/bench_metrics.py [--dim 2048] [--samples 500] [--device cpu]

On the CPU it also times Inception features of a 64-image batch fed whole against the chunks that
``extract_features`` feeds.

Prints, for each block, the baseline time, ours, the speed-up ratio and the largest difference
between the two results (they compute the same quantity).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from stylegan.cpu_malloc import keep_freed_memory
from stylegan.metrics import (
    fid_from_features,
    frechet_distance,
    mean_cov,
    precision_recall,
    tf1_bilinear_resize,
)
from stylegan.metrics.features import CPU_CHUNK, extract_features
from stylegan.metrics.inception import default_inception


def timed(fn: Callable[[], object], repeats: int = 3) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def report(name: str, baseline: tuple[float, object], ours: tuple[float, object]) -> None:
    diff = np.max(np.abs(np.asarray(baseline[1], dtype=np.float64) - np.asarray(ours[1], dtype=np.float64)))
    speedup = baseline[0] / ours[0]
    print(
        f"{name:<34} baseline {baseline[0]:8.3f}s  ours {ours[0]:8.3f}s  x{speedup:6.1f}  |diff| {diff:.2e}"
    )


def sqrtm_fid(mu1, s1, mu2, s2) -> float:
    """StyleGAN2-ADA's formula: a general matrix square root of the product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * covmean)))


def grid_sample_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """NVIDIA's detector-internal formulation of the TF1 resize."""
    n, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0, 1 / w - 1 / size], [0, 1.0, 1 / h - 1 / size]], device=x.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def naive_precision(real: torch.Tensor, gen: torch.Tensor, k: int = 3) -> float:
    """Precision with the whole distance matrices in memory."""
    radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    return float((torch.cdist(gen, real) <= radii).any(dim=1).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (Inception: 2048)")
    parser.add_argument("--samples", type=int, default=500, help="feature vectors per set")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(max(args.samples, args.dim + 1) * 2, args.dim)).astype(np.float32)
    b = (a[::-1] * 1.1 + 0.05).copy()
    mu1, s1 = mean_cov(a)
    mu2, s2 = mean_cov(b)
    print(f"dim {args.dim}, {a.shape[0]} samples for covariances, {args.samples} for the small-set path")

    report(
        "frechet_distance vs sqrtm",
        timed(lambda: sqrtm_fid(mu1, s1, mu2, s2), 1),
        timed(lambda: frechet_distance(mu1, s1, mu2, s2), 1),
    )
    small_a, small_b = a[: args.samples], b[: args.samples]
    report(
        "fid small sets vs covariances",
        timed(lambda: frechet_distance(*mean_cov(small_a), *mean_cov(small_b)), 1),
        timed(lambda: fid_from_features(small_a, small_b)),
    )

    images = torch.rand(32, 3, 256, 256, device=args.device) * 255
    report(
        "tf1 resize vs grid_sample",
        timed(lambda: grid_sample_resize(images, 299).cpu()),
        timed(lambda: tf1_bilinear_resize(images, (299, 299)).cpu()),
    )

    real = torch.from_numpy(a[:4000]).to(args.device)
    gen = torch.from_numpy(b[:4000]).to(args.device)
    report(
        "precision: batched vs full matrix",
        timed(lambda: naive_precision(real, gen), 1),
        timed(
            lambda: precision_recall(real, gen, row_batch_size=1000, col_batch_size=1000, device=args.device)[
                0
            ],
            1,
        ),
    )

    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as extract_features does, so that both sides run with it
        detector = default_inception(device)
        batch = torch.randint(0, 256, [64, 3, 64, 64], dtype=torch.uint8)
        report(
            f"inception: 64 images at once vs {CPU_CHUNK}",
            timed(lambda: detector.features(batch), 2),
            timed(
                lambda: extract_features([batch], {"f": detector.features}, device, progress=False)["f"], 2
            ),
        )


if __name__ == "__main__":
    main()
