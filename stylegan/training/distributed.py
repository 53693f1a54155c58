"""Data-parallel training across processes started by ``torchrun`` (one process per GPU).

Every rank holds a full copy of G, D and G_ema, trains on its slice of each global minibatch and sums
its gradients with the other ranks before the optimiser step, so all copies stay identical. The sum
is one flat all-reduce per phase rather than ``DistributedDataParallel``'s bucketed hooks, because
DDP does not support the double backward of the R1 and path-length penalties (``autograd.grad`` with
``create_graph=True``); this is how NVIDIA's StyleGAN3 code reduces gradients too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from stylegan.devices import resolve_device

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job; a single-process job has rank 0 of 1."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (a no-op for one process); returns it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, indexed by rank."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (sent in memory between the ranks of this job)."""
        if not self.is_distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` on every rank with rank 0's values."""
        if self.is_distributed:
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def init_distributed(device: str | torch.device | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment, or run alone when there is none.

    Uses NCCL on CUDA and gloo on the CPU. Each rank uses the GPU of its ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext(device=resolve_device(device))
    missing = [name for name in _ENV_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start the job with torchrun"
        )
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(device=resolved, rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_gradients(module: nn.Module, ctx: DistributedContext) -> None:
    """Sum the gradients of ``module`` over ranks with one flat all-reduce.

    Every rank runs the same graph, so the same parameters have gradients on every rank.
    """
    if not ctx.is_distributed:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for p, reduced in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(reduced.view_as(p))
