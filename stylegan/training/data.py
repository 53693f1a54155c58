"""Feeding real images to the training loop, in an order that survives restarts and rank counts.

A map-style dataset (``__len__`` and ``__getitem__``) is read in an endless sequence of seeded
permutations, one per epoch. Global minibatch ``k`` is positions ``[k B, (k + 1) B)`` of that sequence
and rank ``r`` of ``R`` reads its ``r``-th contiguous slice, so the images of a step do not depend on
the number of processes, and resuming needs only the number of images already trained on.

An iterable dataset (such as :class:`stylegan.dataset.ShardDataset`) shuffles and splits itself
across ranks. If it has ``stream_from(position, batch_size=...)`` (an endless copy of this rank's stream
from sample ``position``, in batches that do not depend on the number of loader workers), each rank
reads its stream from the ``start_nimg / world_size``-th image, so a resumed run sees exactly the images
an uninterrupted one would: bit-identical on the CPU. Failing that, with ``set_epoch`` and ``__len__``
(images per epoch over all ranks) a resumed run starts at the first epoch it had not begun, so the stream
continues rather than restarting; the rest of the interrupted epoch is skipped, which makes the resumed
run statistically, not bitwise, equal.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from stylegan.dataset import worker_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetShape:
    channels: int
    resolution: int
    c_dim: int


def dataset_shape(dataset: Dataset | IterableDataset) -> DatasetShape:
    """Image channels, resolution and label size: from the dataset's attributes or its first sample."""
    names = ("num_channels", "resolution", "label_dim")
    if all(hasattr(dataset, name) for name in names):
        return DatasetShape(*(int(getattr(dataset, name)) for name in names))
    first = dataset[0] if not isinstance(dataset, IterableDataset) else next(iter(dataset))
    img, c = first
    if img.ndim != 3 or img.shape[1] != img.shape[2] or img.dtype != torch.uint8:
        raise ValueError(
            f"dataset images must be square uint8 [C, H, W] tensors, got {img.dtype} {list(img.shape)}"
        )
    return DatasetShape(channels=img.shape[0], resolution=img.shape[1], c_dim=int(c.numel()))


class TensorImageDataset(Dataset):
    """Images held in memory: uint8 ``[N, C, H, W]`` with optional class indices ``[N]``."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, num_classes: int = 0
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be uint8 [N, C, H, H], got {images.dtype} {list(images.shape)}")
        if (labels is None) != (num_classes == 0):
            raise ValueError("pass labels together with num_classes > 0, or neither")
        if labels is not None and (
            labels.shape != (len(images),) or not 0 <= int(labels.min()) <= int(labels.max()) < num_classes
        ):
            raise ValueError(f"labels must be {len(images)} class indices in [0, {num_classes})")
        self.images, self.labels, self.label_dim = images, labels, num_classes
        self.num_channels, self.resolution = images.shape[1], images.shape[2]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = torch.zeros(self.label_dim)
        if self.labels is not None:
            label[self.labels[index]] = 1
        return self.images[index], label

    def label_distribution(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.label_dim) / len(self.labels)


class GlobalOrderBatches(Sampler[list[int]]):
    """This rank's indices of every global minibatch, starting at image ``start`` of the endless order."""

    def __init__(
        self, size: int, batch_size: int, rank: int, world_size: int, seed: int, start: int = 0
    ) -> None:
        if size < 1:
            raise ValueError("the dataset is empty")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} does not split over {world_size} ranks")
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.local = batch_size // world_size
        self.offset = rank * self.local

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, order = -1, np.empty(0, dtype=np.int64)
        for step_start in itertools.count(self.start, self.batch_size):
            indices = []
            for position in range(step_start + self.offset, step_start + self.offset + self.local):
                epoch, index = divmod(position, self.size)
                if epoch != cached_epoch:
                    cached_epoch, order = epoch, self.permutation(epoch)
                indices.append(int(order[index]))
            yield indices


def real_batches(
    dataset: Dataset | IterableDataset,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    start_nimg: int,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(uint8 images [B/R, C, H, W], labels [B/R, c_dim])`` for this rank from image ``start_nimg``
    of the run, where ``B`` is the global batch and ``R`` the number of ranks."""
    # A private generator for the loader's worker seeds: creating an iterator would otherwise draw from
    # torch's global generator, whose state a resumed run restores and must not see consumed.
    loader_kwargs = dict(
        num_workers=num_workers,
        multiprocessing_context=worker_context(num_workers),
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed + rank),
    )
    if isinstance(dataset, IterableDataset) and hasattr(dataset, "stream_from"):
        stream = dataset.stream_from(start_nimg // world_size, batch_size=batch_size // world_size)
        return iter(DataLoader(stream, batch_size=batch_size // world_size, **loader_kwargs))
    if isinstance(dataset, IterableDataset):
        return _stream_batches(dataset, batch_size // world_size, start_nimg, loader_kwargs)
    sampler = GlobalOrderBatches(len(dataset), batch_size, rank, world_size, seed, start_nimg)
    return iter(
        DataLoader(dataset, batch_sampler=sampler, persistent_workers=num_workers > 0, **loader_kwargs)
    )


def _stream_batches(
    dataset: IterableDataset, batch_size: int, start_nimg: int, loader_kwargs: dict
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of an iterable dataset, epoch after epoch (an infinite stream is one long epoch)."""
    epochs = hasattr(dataset, "set_epoch") and hasattr(dataset, "__len__")
    epoch = -(-start_nimg // len(dataset)) if epochs else 0
    if start_nimg and not epochs:
        log.warning(
            "%s has no set_epoch()/__len__: the resumed run restarts its stream", type(dataset).__name__
        )
    while True:
        if epochs:
            dataset.set_epoch(epoch)  # before the loader copies the dataset into its workers
        empty = True
        for batch in DataLoader(dataset, batch_size=batch_size, drop_last=True, **loader_kwargs):
            empty = False
            yield batch
        if empty:
            raise ValueError(f"the dataset yielded fewer than {batch_size} images per epoch")
        epoch += 1


def label_probabilities(dataset: Dataset | IterableDataset, c_dim: int) -> torch.Tensor | None:
    """Class frequencies to draw generator labels from, as the official loop draws labels of random
    training images; None for unconditional data."""
    if c_dim == 0:
        return None
    if not hasattr(dataset, "label_distribution"):
        raise ValueError("conditional training needs dataset.label_distribution() (class frequencies)")
    probs = torch.as_tensor(np.asarray(dataset.label_distribution(), dtype=np.float64))
    if probs.shape != (c_dim,) or bool((probs < 0).any()) or float(probs.sum()) <= 0:
        raise ValueError(
            f"dataset.label_distribution() must be {c_dim} non-negative frequencies, got {probs.tolist()}"
        )
    return probs / probs.sum()


def sample_labels(
    probs: torch.Tensor | None, shape: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """One-hot labels ``[*shape, c_dim]`` drawn from ``probs`` (``[*shape, 0]`` when unconditional)."""
    if probs is None:
        return torch.zeros([*shape, 0])
    n = int(np.prod(shape))
    classes = torch.multinomial(probs, n, replacement=True, generator=generator)
    return torch.nn.functional.one_hot(classes, len(probs)).to(torch.float32).reshape(*shape, len(probs))
