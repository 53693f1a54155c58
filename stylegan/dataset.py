"""Stream training images from WebDataset tar shards described by an ``index.json``.

The index lists every shard with its sample count, so each consumer (a DataLoader worker on a DDP
rank) can be handed an exact slice of the epoch without reading anything first:

* **Splitting.** The epoch is the shards' samples laid end to end, the shards in a seeded random order
  (the same on every rank and worker). Consumer ``c`` of ``C = world_size * num_workers`` takes the
  contiguous positions ``[c * N // C, (c + 1) * N // C)``: no sample is read twice or left out, the
  consumers' shares differ by at most one, and each reads only the few shards its slice touches.
* **Shuffling.** Shard order (above) plus an in-memory buffer of `shuffle_buffer` encoded samples,
  seeded by ``(seed, epoch, consumer)``: the same settings give the same stream. Call
  :meth:`ShardDataset.set_epoch` before each epoch (``infinite=True`` advances it by itself).
* **x-flips.** With ``xflip=True`` the epoch holds every image twice, once as stored and once mirrored
  left to right, as ``--mirror`` in StyleGAN2-ADA: each consumer makes two passes over its slice (the
  second in another shard order); a seeded coin per sample picks which pass mirrors it.

Samples are decoded from PNG with PIL. This module depends on torch, numpy and PIL only.
"""

from __future__ import annotations

import hashlib
import io
import json
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

__all__ = ["INDEX_FILE", "ShardDataset", "ShardIntegrityError"]

INDEX_FILE = "index.json"
SUPPORTED_VERSION = 1

# Sample = {extension: payload} of one key; Segment = (shard number, first sample, end sample).
Sample = dict[str, bytes]
Segment = tuple[int, int, int]


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
    shuffle_buffer: samples held (encoded) for shuffling; memory is about this many PNG files.
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

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of `epoch`; call before iterating (DataLoader workers copy it)."""
        self.epoch = epoch

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
        consumer = self.rank * num_workers + worker
        stream = self._stream(consumer, self.world_size * num_workers)
        if self.shuffle:
            stream = _buffer_shuffle(stream, self.shuffle_buffer, self._rng(self.epoch, 2, consumer))
        for where, sample, flip in stream:
            yield self._decode(where, sample, flip)

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
        yield from DataLoader(plain, batch_size=batch_size, num_workers=num_workers)

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])

    def _stream(self, consumer: int, num_consumers: int) -> Iterator[tuple[str, Sample, bool]]:
        """(where, sample, mirror it) for this consumer's slice of each epoch, in read order."""
        epoch = self.epoch
        while True:
            segments = self._segments(epoch, consumer, num_consumers)
            if not self.xflip:
                yield from self._pass(segments, [np.zeros(stop - start, bool) for _, start, stop in segments])
            elif not self.shuffle:  # every image as stored, then every image mirrored
                unflipped = [np.zeros(stop - start, bool) for _, start, stop in segments]
                yield from self._pass(segments, unflipped)
                yield from self._pass(segments, [~coins for coins in unflipped])
            else:
                rng = self._rng(epoch, 1, consumer)
                coins = [rng.integers(0, 2, stop - start).astype(bool) for _, start, stop in segments]
                yield from self._pass(segments, coins)
                second = rng.permutation(len(segments))
                yield from self._pass([segments[i] for i in second], [~coins[i] for i in second])
            if not self.infinite:
                return
            epoch += 1

    def _pass(self, segments: list[Segment], flips: list[np.ndarray]) -> Iterator[tuple[str, Sample, bool]]:
        for segment, segment_flips in zip(segments, flips, strict=True):
            for (where, sample), flip in zip(self._read(segment), segment_flips, strict=True):
                yield where, sample, bool(flip)

    def _segments(self, epoch: int, consumer: int, num_consumers: int) -> list[Segment]:
        """The parts of shards that hold positions [c N / C, (c + 1) N / C) of the epoch's order."""
        order = (
            self._rng(epoch, 0).permutation(len(self._shards)) if self.shuffle else range(len(self._shards))
        )
        total = self.num_images
        first, end = consumer * total // num_consumers, (consumer + 1) * total // num_consumers
        segments, offset = [], 0
        for number in order:
            count = self._shards[number].count
            lo, hi = max(first - offset, 0), min(end - offset, count)
            if lo < hi:
                segments.append((int(number), lo, hi))
            offset += count
        return segments

    def _read(self, segment: Segment) -> Iterator[tuple[str, Sample]]:
        """Samples ``start`` to ``stop`` (exclusive) of one shard, as ("shard:key", {extension: bytes})."""
        number, start, stop = segment
        shard = self._shards[number]
        if self.verify_shards:
            self._verify(shard)
        position = 0
        with tarfile.open(shard.path, "r:") as tar:
            for key, members in _group_by_key(tar, shard.path):
                if position >= start:
                    yield (
                        f"{shard.path.name}:{key}",
                        {ext: _read_member(tar, m) for ext, m in members.items()},
                    )
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


def _buffer_shuffle(
    stream: Iterator[tuple[str, Sample, bool]], size: int, rng: np.random.Generator
) -> Iterator[tuple[str, Sample, bool]]:
    """Yield the items of `stream` in random order, holding at most `size` of them at a time."""
    buffer: list[tuple[str, Sample, bool]] = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = int(rng.integers(size))
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)):
        yield buffer[slot]
