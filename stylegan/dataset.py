"""Stream training images from WebDataset tar shards described by an ``index.json``.

The index lists every shard with its sample count, so each rank of a DDP job can be handed an exact
slice of the epoch without reading anything first, and a stream can start at any sample:

* **Splitting.** The epoch is the shards' samples laid end to end, the shards in a seeded random order
  (the same on every rank). Rank ``r`` of ``R`` takes the contiguous positions
  ``[r * N // R, (r + 1) * N // R)``: no sample is read twice or left out, the ranks' shares differ by at
  most one, and each rank reads only the few shards its slice touches.
* **Shuffling.** Shard order (above) plus a shuffle buffer of `shuffle_buffer` samples, seeded by
  ``(seed, epoch, rank)``: the same settings give the same stream. Call :meth:`ShardDataset.set_epoch`
  before each epoch (``infinite=True`` advances it by itself).
* **x-flips.** With ``xflip=True`` the epoch holds every image twice, once as stored and once mirrored
  left to right, as ``--mirror`` in StyleGAN2-ADA: each rank makes two passes over its slice (the
  second in another shard order); a seeded coin per sample picks which pass mirrors it.
* **Positions.** A rank's stream is a function of ``(seed, rank, world_size)`` alone: epoch after epoch of
  its slice, shuffled. :meth:`ShardDataset.stream_from` starts it at any sample (a resumed training
  run continues exactly where it stopped), reading only the shards whose samples it still needs.
* **DataLoader workers** take turns at whole batches of the rank's stream (``batch_size`` of
  :meth:`~ShardDataset.stream_from`; single samples otherwise): a ``DataLoader`` with that batch size
  yields the same batches in the same order for any number of workers. Each worker decodes only its own
  samples; it skips over the others' in the tar files by their headers.

The shuffle buffer is replayed on sample numbers (a few microseconds per sample and epoch), which tells
each worker which samples it needs and when, before any file is opened. Samples are decoded from PNG
with PIL. This module depends on torch, numpy and PIL only.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import multiprocessing
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

__all__ = ["INDEX_FILE", "ShardDataset", "ShardIntegrityError", "worker_context"]

INDEX_FILE = "index.json"
SUPPORTED_VERSION = 1

# Sample = {extension: payload} of one key; Segment = (shard number, first sample, end sample).
Sample = dict[str, bytes]
Segment = tuple[int, int, int]


def worker_context(num_workers: int) -> multiprocessing.context.BaseContext | None:
    """How DataLoader workers start: from a fork server (spawn where there is none), never forked from
    this process. A fork copies this process's threads' locks in whatever state they are in (tracking
    and progress threads run during training) and its exit hooks: after a Prefect flow run in the
    process, Prefect's hooks fail in a forked child, which then exits with code 1 and stops the loader."""
    if num_workers == 0:
        return None
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class ShardIntegrityError(ValueError):
    """A shard differs from what the index recorded (size, checksum or contents)."""


@dataclass(frozen=True)
class _Shard:
    path: Path
    count: int
    sha256: str
    bytes: int


class ShardDataset(IterableDataset):
    """Images as ``uint8 [C, H, W]`` tensors with ``float32 [label_dim]`` one-hot labels.

    root_or_index_path: a directory holding ``index.json``, or the index file itself.
    shuffle: shuffle shard order and samples (training); off, samples come in index order.
    xflip: double the epoch with mirrored copies (see the module docstring).
    use_labels: return one-hot labels; when False (or the data has none) labels have length 0.
    rank, world_size: this process's place in distributed training; ranks split every epoch.
    shuffle_buffer: the shuffle buffer's size in samples; a worker holds at most this many (encoded).
    infinite: repeat epochs forever, reshuffling each time.
    verify_shards: check each shard's size and sha256 against the index the first time this process
        reads it (a few percent of the decoding time); :meth:`verify` checks all of them at once.
    """

    def __init__(
        self,
        root_or_index_path: str | os.PathLike[str],
        *,
        shuffle: bool = True,
        seed: int = 0,
        xflip: bool = False,
        use_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 1000,
        infinite: bool = False,
        verify_shards: bool = True,
    ) -> None:
        super().__init__()
        path = Path(root_or_index_path)
        self.index_path = path / INDEX_FILE if path.is_dir() else path
        self._index = _load_index(self.index_path)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")
        labels = self._index["labels"]
        if use_labels and not labels["has_labels"]:
            raise ValueError(f"use_labels=True, but the data set of {self.index_path} has no labels")
        self.shuffle, self.seed, self.xflip, self.use_labels = shuffle, seed, xflip, use_labels
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.infinite, self.verify_shards = shuffle_buffer, infinite, verify_shards
        self.epoch = 0
        self._position = 0  # where the next iteration starts, in samples of this rank's stream
        self._worker_batch = 1  # samples DataLoader workers take in turn
        self._shards = [
            _Shard(self.index_path.parent / s["name"], s["count"], s["sha256"], s["bytes"])
            for s in self._index["shards"]
        ]
        self._verified: set[Path] = set()

    # --- description -------------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self._index["resolution"]

    @property
    def num_channels(self) -> int:
        return self._index["channels"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.num_channels, self.resolution, self.resolution)

    @property
    def has_labels(self) -> bool:
        """Whether the data set has labels (whether or not this reader returns them)."""
        return bool(self._index["labels"]["has_labels"])

    @property
    def label_dim(self) -> int:
        """Length of the returned label vectors: the number of classes, or 0 without `use_labels`."""
        return self._index["labels"]["num_classes"] if self.use_labels else 0

    @property
    def num_images(self) -> int:
        """Images stored, without x-flips."""
        return self._index["count"]

    def __len__(self) -> int:
        """Images in one epoch over all ranks, x-flipped copies included."""
        return self.num_images * (2 if self.xflip else 1)

    def label_distribution(self) -> np.ndarray:
        """Fraction of the images in each class (float64, sums to 1); empty without labels."""
        counts = np.asarray(self._index["labels"].get("counts", []), dtype=np.float64)
        return counts / counts.sum() if counts.size else counts

    @property
    def rank_length(self) -> int:
        """Images in one epoch on this rank, x-flipped copies included."""
        first, end = self._rank_slice()
        return (end - first) * (2 if self.xflip else 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of `epoch`; call before iterating (DataLoader workers copy it)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch
        self._position = epoch * self.rank_length

    def stream_from(self, position: int, *, batch_size: int = 1) -> ShardDataset:
        """An endless copy of this reader that starts at sample `position` of this rank's stream.

        The stream is epoch 0, 1, 2, ... of this rank's slice, shuffled as set up; `position` counts its
        samples from the start of epoch 0, e.g. the images one rank has trained on. Read it with
        ``DataLoader(copy, batch_size=batch_size, num_workers=any)``: the workers take turns at batches of
        `batch_size`, so the batches are the stream's, in order, whatever the number of workers.
        """
        if position < 0 or batch_size < 1:
            raise ValueError(f"position must be >= 0 and batch_size >= 1, got {position} and {batch_size}")
        if self.rank_length == 0:
            raise ValueError(f"rank {self.rank} of {self.world_size} has no images of {self.index_path}")
        stream = copy.copy(self)
        stream._verified = set(self._verified)
        stream.infinite, stream._position, stream._worker_batch = True, position, batch_size
        stream.epoch = position // self.rank_length
        return stream

    # --- integrity ---------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check every shard's size and sha256 against the index; raises :class:`ShardIntegrityError`."""
        for shard in self._shards:
            self._verify(shard)

    def _verify(self, shard: _Shard) -> None:
        if shard.path in self._verified:
            return
        try:
            size = shard.path.stat().st_size
        except FileNotFoundError as exc:
            raise ShardIntegrityError(f"shard {shard.path} listed in {self.index_path} is missing") from exc
        if size != shard.bytes:
            raise ShardIntegrityError(f"shard {shard.path} has {size} bytes, the index says {shard.bytes}")
        digest = hashlib.sha256()
        with open(shard.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != shard.sha256:
            raise ShardIntegrityError(
                f"shard {shard.path} has sha256 {digest.hexdigest()}, the index says {shard.sha256}"
            )
        self._verified.add(shard.path)

    # --- iteration ---------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        length = self.rank_length
        if length == 0:
            return
        epoch, offset = divmod(self._position, length)
        served = 0  # samples of the stream before this epoch's first one, since the start position
        while True:
            # This worker's samples of the epoch: every num_workers-th batch of the stream, from its start.
            positions = np.arange(offset, length)
            turns = (served + positions - offset) // self._worker_batch
            yield from self._epoch_samples(epoch, positions[turns % num_workers == worker])
            if not self.infinite:
                return
            served += length - offset
            epoch, offset = epoch + 1, 0

    def iterate_batches(
        self, batch_size: int, *, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the images, each once, unshuffled and unmirrored, in batches of
        ``uint8 [B, C, H, W]`` images and ``float32 [B, label_dim]`` labels (for metrics)."""
        plain = ShardDataset(
            self.index_path,
            shuffle=False,
            xflip=False,
            use_labels=self.use_labels,
            rank=self.rank,
            world_size=self.world_size,
            verify_shards=self.verify_shards,
        )
        plain._worker_batch = batch_size  # the workers take turns at batches: index order for any number
        if plain.rank_length:
            yield from DataLoader(
                plain,
                batch_size=batch_size,
                num_workers=num_workers,
                multiprocessing_context=worker_context(num_workers),
            )

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])

    def _rank_slice(self) -> tuple[int, int]:
        """This rank's positions ``[first, end)`` in every epoch's order of the stored images."""
        total = self.num_images
        return self.rank * total // self.world_size, (self.rank + 1) * total // self.world_size

    def _reads(self, epoch: int) -> list[tuple[Segment, np.ndarray]]:
        """The epoch's reads on this rank, in order, as (shard segment, mirror each sample)."""
        segments = self._segments(epoch)
        unflipped = [np.zeros(stop - start, bool) for _, start, stop in segments]
        if not self.xflip:
            return list(zip(segments, unflipped, strict=True))
        if not self.shuffle:  # every image as stored, then every image mirrored
            mirrored = [~flips for flips in unflipped]
            return [*zip(segments, unflipped, strict=True), *zip(segments, mirrored, strict=True)]
        rng = self._rng(epoch, 1, self.rank)
        coins = [rng.integers(0, 2, stop - start).astype(bool) for _, start, stop in segments]
        second = rng.permutation(len(segments))
        return [*zip(segments, coins, strict=True), *((segments[i], ~coins[i]) for i in second)]

    def _epoch_samples(
        self, epoch: int, positions: np.ndarray
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The decoded samples at `positions` (ascending) of the epoch's shuffled order on this rank."""
        if not len(positions):
            return
        reads = self._reads(epoch)
        length = sum(len(flips) for _, flips in reads)
        order = (
            _buffer_order(length, self.shuffle_buffer, self._rng(epoch, 2, self.rank))
            if self.shuffle
            else np.arange(length)
        )
        needed = order[positions]  # read positions, in the order they go out
        wanted = np.zeros(length, bool)
        wanted[needed] = True
        reader = self._read_wanted(reads, wanted)
        read: dict[int, tuple[str, Sample, bool]] = {}  # read, not yet out: at most about the buffer
        try:
            for position in needed.tolist():
                while position not in read:
                    at, item = next(reader)
                    read[at] = item
                yield self._decode(*read.pop(position))
        finally:
            reader.close()

    def _read_wanted(
        self, reads: list[tuple[Segment, np.ndarray]], wanted: np.ndarray
    ) -> Iterator[tuple[int, tuple[str, Sample, bool]]]:
        """(read position, (where, sample, mirror it)) of the wanted samples, in read order; shards with
        none of them are not opened, the others' samples are skipped by their tar headers."""
        position = 0
        for segment, flips in reads:
            mask = wanted[position : position + len(flips)]
            if mask.any():
                for offset, (where, sample) in enumerate(self._read(segment, mask)):
                    if sample is not None:
                        yield position + offset, (where, sample, bool(flips[offset]))
            position += len(flips)

    def _segments(self, epoch: int) -> list[Segment]:
        """The parts of shards that hold this rank's positions [r N / R, (r + 1) N / R) of the epoch's
        order of the shards."""
        order = (
            self._rng(epoch, 0).permutation(len(self._shards)) if self.shuffle else range(len(self._shards))
        )
        first, end = self._rank_slice()
        segments, offset = [], 0
        for number in order:
            count = self._shards[number].count
            lo, hi = max(first - offset, 0), min(end - offset, count)
            if lo < hi:
                segments.append((int(number), lo, hi))
            offset += count
        return segments

    def _read(
        self, segment: Segment, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[str, Sample | None]]:
        """Samples ``start`` to ``stop`` (exclusive) of one shard, as ("shard:key", {extension: bytes});
        with `wanted` (a mask over them) the unwanted ones come as ("shard:key", None), unread."""
        number, start, stop = segment
        shard = self._shards[number]
        if self.verify_shards:
            self._verify(shard)
        position = 0
        with tarfile.open(shard.path, "r:") as tar:
            for key, members in _group_by_key(tar, shard.path):
                if position >= start:
                    where = f"{shard.path.name}:{key}"
                    if wanted is not None and not wanted[position - start]:
                        yield where, None
                    else:
                        yield where, {ext: _read_member(tar, m) for ext, m in members.items()}
                position += 1
                if position == stop:
                    return
        raise ShardIntegrityError(
            f"shard {shard.path} holds {position} samples, the index says {shard.count}"
        )

    def _decode(self, where: str, sample: Sample, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if "png" not in sample:
            raise ShardIntegrityError(f"sample {where} has no .png member (has {sorted(sample)})")
        try:
            with PIL.Image.open(io.BytesIO(sample["png"])) as image:
                pixels = np.array(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ShardIntegrityError(f"sample {where} cannot be decoded: {exc}") from exc
        if pixels.shape != (self.resolution, self.resolution, self.num_channels):
            raise ShardIntegrityError(
                f"sample {where} is {pixels.shape} (H, W, C), the index says {self.resolution}px, "
                f"{self.num_channels} channels"
            )
        if flip:
            pixels = np.ascontiguousarray(pixels[:, ::-1])
        image_tensor = torch.from_numpy(pixels).permute(2, 0, 1)
        label = torch.zeros(self.label_dim, dtype=torch.float32)
        if self.use_labels:
            label[self._label(where, sample)] = 1
        return image_tensor, label

    def _label(self, where: str, sample: Sample) -> int:
        try:
            value = int(sample["cls"].decode())
        except (KeyError, ValueError) as exc:
            raise ShardIntegrityError(f"sample {where} has no valid .cls label") from exc
        if not 0 <= value < self.label_dim:
            raise ShardIntegrityError(f"sample {where} has label {value}, outside [0, {self.label_dim})")
        return value


def _load_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no shard index at {path}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc.msg}") from exc
    if index.get("format") != "webdataset" or index.get("version") != SUPPORTED_VERSION:
        raise ValueError(
            f"{path}: expected format 'webdataset' version {SUPPORTED_VERSION}, "
            f"got {index.get('format')!r} version {index.get('version')!r}"
        )
    missing = {"resolution", "channels", "count", "labels", "shards"} - set(index)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}")
    for shard in index["shards"]:
        name = shard.get("name", "")
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"{path}: shard name {name!r} must be a plain file name next to the index")
    if sum(shard["count"] for shard in index["shards"]) != index["count"]:
        raise ValueError(f"{path}: shard counts do not add up to count={index['count']}")
    return index


def _group_by_key(tar: tarfile.TarFile, path: Path) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """Consecutive members sharing a key (``dir/key.ext`` -> ``dir/key``), as WebDataset groups them."""
    key: str | None = None
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar:
        if not member.isfile():
            continue
        base = posixpath.basename(member.name)
        if "." not in base:
            raise ShardIntegrityError(f"shard {path}: member {member.name!r} has no extension")
        stem, extension = base.split(".", 1)
        member_key = posixpath.join(posixpath.dirname(member.name), stem)
        if member_key != key:
            if key is not None:
                yield key, members
            key, members = member_key, {}
        members[extension] = member
    if key is not None:
        yield key, members


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    file = tar.extractfile(member)
    assert file is not None  # regular files only (see _group_by_key)
    return file.read()


def _buffer_order(length: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer of `size` passes on `length` items: ``order[k]`` is the
    position of the `k`-th item out. Each item after the first `size` takes a random slot and the one
    there goes out; at the end the buffer empties in random order. Computed on positions alone, so that a
    reader knows which item goes out when before it reads any."""
    size = min(size, length)
    buffer = list(range(size))
    order = []
    slots = rng.integers(size, size=length - size).tolist() if size else []
    for incoming, slot in zip(range(size, length), slots, strict=True):
        order.append(buffer[slot])
        buffer[slot] = incoming
    order += [buffer[slot] for slot in rng.permutation(size).tolist()]
    return np.asarray(order, dtype=np.int64)
