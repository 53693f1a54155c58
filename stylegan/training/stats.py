"""Per-tick training statistics, gathered on the device without synchronising every step."""

from __future__ import annotations

import resource
import sys
from collections import defaultdict

import torch

from stylegan.training.distributed import DistributedContext


class TickStats:
    """Running sums of the per-sample statistics each phase returns, reduced over ranks once per tick.

    Keys are ``(phase, statistic)``, so a NaN can be traced to the phase that produced it.
    """

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], torch.Tensor] = {}
        self._counts: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, phase: str, stats: dict[str, torch.Tensor]) -> None:
        for name, values in stats.items():
            key = (phase, name)
            total = values.detach().sum(dtype=torch.float64)
            self._sums[key] = self._sums[key] + total if key in self._sums else total
            self._counts[key] += values.numel()

    def reduce(self, ctx: DistributedContext) -> dict[tuple[str, str], float]:
        """Mean of every statistic since the last reset, over all ranks (the same result on each)."""
        keys = sorted(self._sums)
        if not keys:
            return {}
        packed = torch.stack(
            [torch.stack([self._sums[k], self._sums[k].new_tensor(self._counts[k])]) for k in keys]
        )
        totals = ctx.all_reduce_sum(packed).tolist()
        return {key: total / count for key, (total, count) in zip(keys, totals, strict=True)}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()


def merge_phases(means: dict[tuple[str, str], float]) -> dict[str, float]:
    """One value per statistic: the average over the phases that produced it."""
    by_name: dict[str, list[float]] = defaultdict(list)
    for (_, name), value in means.items():
        by_name[name].append(value)
    return {name: sum(values) / len(values) for name, values in by_name.items()}


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory on ``device`` since the last reset, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
