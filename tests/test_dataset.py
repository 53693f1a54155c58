"""stylegan.dataset.ShardDataset: exact pixels and labels back from prepared shards; every image exactly
once per epoch across DataLoader workers and ranks; reproducible shuffles; x-flips; integrity checks."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import PIL.Image
import pytest
import torch
from prefect import flow
from torch.utils.data import DataLoader

from pipeline.shards import prepare_shards
from stylegan.dataset import ShardDataset, ShardIntegrityError, worker_context
from stylegan.training.data import real_batches

COUNT, RESOLUTION, CLASSES = 37, 8, 3


@pytest.fixture(scope="module")
def images():
    """Distinct random images, and their labels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (COUNT, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    return pixels, [int(x) for x in rng.integers(0, CLASSES, COUNT)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, images):
    root = tmp_path_factory.mktemp("dataset")
    pixels, labels = images
    rows = []
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        PIL.Image.fromarray(image).save(root / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": label})
    prepare_shards(root, rows, root / "shards", resolution=RESOLUTION, shard_size=5, workers=1)  # 8 shards
    return root / "shards"


def _identify(images, batch: torch.Tensor) -> list[tuple[int, bool]]:
    """(index, mirrored) of each image of a [B, C, H, W] batch."""
    pixels = images[0]
    lookup = {pixels[i].tobytes(): (i, False) for i in range(COUNT)}
    lookup.update({np.ascontiguousarray(pixels[i][:, ::-1]).tobytes(): (i, True) for i in range(COUNT)})
    return [lookup[image.permute(1, 2, 0).numpy().tobytes()] for image in batch]


def _workers(num_workers: int) -> dict:
    """DataLoader arguments for `num_workers` workers started as the training loop starts them."""
    return {"num_workers": num_workers, "multiprocessing_context": worker_context(num_workers)}


def _epoch(images, dataset, num_workers: int = 0, batch_size: int = 4) -> list[tuple[int, bool]]:
    """(index, mirrored) of every image that one pass of a DataLoader over `dataset` yields."""
    seen = []
    for batch, _ in DataLoader(dataset, batch_size=batch_size, **_workers(num_workers)):
        seen += _identify(images, batch)
    return seen


def test_properties(shards, images):
    dataset = ShardDataset(shards, use_labels=True, xflip=True)
    assert (dataset.resolution, dataset.num_channels, dataset.image_shape) == (8, 3, (3, 8, 8))
    assert dataset.has_labels and dataset.label_dim == CLASSES
    assert len(dataset) == 2 * COUNT and dataset.num_images == COUNT
    expected = np.bincount(images[1], minlength=CLASSES) / COUNT
    np.testing.assert_allclose(dataset.label_distribution(), expected)
    plain = ShardDataset(shards / "index.json")
    assert plain.label_dim == 0 and plain.has_labels and len(plain) == COUNT


def test_unshuffled_round_trip_is_pixel_exact_with_one_hot_labels(shards, images):
    pixels, labels = images
    items = list(ShardDataset(shards, shuffle=False, use_labels=True))
    assert len(items) == COUNT
    for i, (image, label) in enumerate(items):
        assert image.dtype == torch.uint8 and image.shape == (3, RESOLUTION, RESOLUTION)
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), pixels[i])
        assert label.dtype == torch.float32
        np.testing.assert_array_equal(label.numpy(), np.eye(CLASSES)[labels[i]])
    image, label = next(iter(ShardDataset(shards)))
    assert label.shape == (0,)


def test_use_labels_without_labels_is_an_error(tmp_path, shards):
    shutil.copytree(shards, tmp_path / "s")
    index = (tmp_path / "s" / "index.json").read_text()
    (tmp_path / "s" / "index.json").write_text(index.replace('"has_labels": true', '"has_labels": false'))
    with pytest.raises(ValueError, match="use_labels=True, but the data set of .*index.json has no labels"):
        ShardDataset(tmp_path / "s", use_labels=True)


def test_shuffle_is_seeded_by_seed_and_epoch(shards, images):
    def order(seed: int, epoch: int) -> list[int]:
        dataset = ShardDataset(shards, seed=seed, shuffle_buffer=8)
        dataset.set_epoch(epoch)
        return [i for i, _ in _epoch(images, dataset)]

    first = order(0, 0)
    assert sorted(first) == list(range(COUNT)) and first != list(range(COUNT))
    assert order(0, 0) == first
    assert order(0, 1) != first and sorted(order(0, 1)) == list(range(COUNT))
    assert order(1, 0) != first


@pytest.mark.parametrize("world_size, num_workers", [(1, 0), (1, 2), (2, 0), (3, 2)])
def test_workers_and_ranks_cover_every_image_once(shards, world_size, num_workers, images):
    seen, per_rank = [], []
    for rank in range(world_size):
        dataset = ShardDataset(shards, rank=rank, world_size=world_size, seed=5)
        dataset.set_epoch(3)
        got = _epoch(images, dataset, num_workers)
        seen += got
        per_rank.append(len(got))
    assert sorted(i for i, _ in seen) == list(range(COUNT))
    assert max(per_rank) - min(per_rank) <= 1


def test_more_consumers_than_shards(shards, images):
    seen = []
    for rank in range(5):  # 10 consumers, 8 shards
        seen += _epoch(images, ShardDataset(shards, rank=rank, world_size=5, shuffle=False), num_workers=2)
    assert sorted(i for i, _ in seen) == list(range(COUNT))


@pytest.mark.parametrize("shuffle", [False, True])
def test_xflip_adds_every_image_mirrored(shards, shuffle, images):
    seen = []
    for rank in range(2):
        seen += _epoch(
            images, ShardDataset(shards, xflip=True, shuffle=shuffle, rank=rank, world_size=2), num_workers=2
        )
    assert Counter(seen) == Counter([(i, False) for i in range(COUNT)] + [(i, True) for i in range(COUNT)])


def test_xflip_unshuffled_gives_stored_then_mirrored(shards, images):
    seen = _epoch(images, ShardDataset(shards, xflip=True, shuffle=False), batch_size=1)
    assert seen == [(i, False) for i in range(COUNT)] + [(i, True) for i in range(COUNT)]


def test_infinite_reshuffles_each_epoch(shards, images):
    # A one-sample buffer passes samples on in read order, so epochs do not mix at their boundaries.
    dataset = ShardDataset(shards, infinite=True, shuffle_buffer=1)
    stream = iter(DataLoader(dataset, batch_size=COUNT, num_workers=0))
    epochs = [[i for i, _ in _identify(images, next(stream)[0])] for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(COUNT))
    assert epochs[0] != epochs[1] != epochs[2]


def test_same_stream_from_same_settings_with_workers(shards, images):
    def run() -> list[tuple[int, bool]]:
        return _epoch(images, ShardDataset(shards, xflip=True, seed=7), num_workers=2)

    assert run() == run()


def test_iterate_batches(shards, images):
    pixels, labels = images
    dataset = ShardDataset(shards, use_labels=True, xflip=True)  # iterate_batches ignores shuffle and xflip
    batches = list(dataset.iterate_batches(10))
    assert [b.shape[0] for b, _ in batches] == [10, 10, 10, 7]
    images_out = torch.cat([b for b, _ in batches])
    assert images_out.dtype == torch.uint8
    np.testing.assert_array_equal(images_out.permute(0, 2, 3, 1).numpy(), pixels)
    np.testing.assert_array_equal(torch.cat([c for _, c in batches]).numpy(), np.eye(CLASSES)[labels])

    seen = []
    for rank in range(2):
        for batch, _ in ShardDataset(shards, rank=rank, world_size=2).iterate_batches(6, num_workers=2):
            seen += [i for i, _ in _identify(images, batch)]
    assert sorted(seen) == list(range(COUNT))


def test_tampered_shard_is_named(tmp_path, shards):
    shutil.copytree(shards, tmp_path / "s")
    shard = tmp_path / "s" / "shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # inside the first PNG
    shard.write_bytes(bytes(data))

    with pytest.raises(
        ShardIntegrityError, match=r"shard-000002\.tar has sha256 [0-9a-f]{64}, the index says"
    ):
        ShardDataset(tmp_path / "s").verify()
    with pytest.raises(ShardIntegrityError, match=r"shard-000002\.tar has sha256"):
        list(ShardDataset(tmp_path / "s", shuffle=False))
    # Unverified, the damage still surfaces when the image is decoded, naming the sample.
    with pytest.raises(ShardIntegrityError, match=r"sample shard-000002\.tar:00000010 cannot be decoded"):
        list(ShardDataset(tmp_path / "s", shuffle=False, verify_shards=False))

    shard.write_bytes(bytes(data[:1024]))
    with pytest.raises(ShardIntegrityError, match=r"shard-000002\.tar has 1024 bytes, the index says"):
        ShardDataset(tmp_path / "s").verify()
    shard.unlink()
    with pytest.raises(ShardIntegrityError, match=r"shard-000002\.tar listed in .*index\.json is missing"):
        ShardDataset(tmp_path / "s").verify()


def test_bad_index(tmp_path, shards):
    with pytest.raises(FileNotFoundError, match="no shard index"):
        ShardDataset(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "tfrecords", "version": 1}')
    with pytest.raises(ValueError, match="expected format 'webdataset'"):
        ShardDataset(tmp_path)
    index = (shards / "index.json").read_text()
    (tmp_path / "index.json").write_text(index.replace('"shard-000001.tar"', '"../shard-000001.tar"'))
    with pytest.raises(ValueError, match="must be a plain file name"):
        ShardDataset(tmp_path)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        ShardDataset(shards, rank=2, world_size=2)


def _stream(images, dataset, count: int, num_workers: int, batch_size: int) -> list[tuple[int, bool]]:
    """(index, mirrored) of the first `count` images of an endless stream, read in batches."""
    seen = []
    for batch, _ in DataLoader(dataset, batch_size=batch_size, **_workers(num_workers)):
        seen += _identify(images, batch)
        if len(seen) >= count:
            return seen[:count]
    raise AssertionError("the stream ended")


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine
@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 2)])
def test_a_stream_restarts_at_any_image_with_any_number_of_workers(shards, images, rank, world_size):
    """stream_from(p) continues the rank's stream exactly at image p, across epochs, as DataLoader batches
    that are the same for 0, 2 or 3 workers: what a resumed training run needs to be bit-identical."""
    reader = ShardDataset(shards, xflip=True, seed=3, shuffle_buffer=7, rank=rank, world_size=world_size)
    length = reader.rank_length  # 74 or 37 images per epoch
    whole = _stream(images, reader.stream_from(0, batch_size=4), 3 * length, num_workers=0, batch_size=4)
    epochs = [whole[i * length : (i + 1) * length] for i in range(3)]
    for epoch in epochs:  # each epoch: this rank's share, every image once as stored or mirrored
        assert len(set(epoch)) == length
    assert epochs[0] != epochs[1]
    for position, workers in [(0, 2), (5, 3), (length - 2, 2), (length + 9, 0), (2 * length + 1, 2)]:
        expected = whole[position : position + 24]
        got = _stream(images, reader.stream_from(position, batch_size=4), 24, workers, batch_size=4)
        assert got == expected, f"stream_from({position}) with {workers} workers"
    assert reader.epoch == 0  # stream_from leaves the reader as it was


def test_stream_from_checks_its_arguments(shards):
    with pytest.raises(ValueError, match="position must be >= 0 and batch_size >= 1"):
        ShardDataset(shards).stream_from(-1)
    with pytest.raises(ValueError, match="rank 0 of 80 has no images"):  # 37 images, 80 ranks
        ShardDataset(shards, rank=0, world_size=80).stream_from(0)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine
def test_iterate_batches_keeps_index_order_with_workers(shards, images):
    batches = ShardDataset(shards).iterate_batches(5, num_workers=3)
    assert [i for batch, _ in batches for i, _ in _identify(images, batch)] == list(range(COUNT))


@pytest.mark.usefixtures("prefect_harness")
def test_loader_workers_start_cleanly_after_a_prefect_flow_ran_in_this_process(shards, images):
    """A Prefect flow run leaves exit hooks behind that fail in a forked child (which then exits with code
    1 and stops the loader): the training loop's and the metrics' loader workers are not forked."""

    @flow
    def a_flow() -> int:
        return 1

    assert a_flow() == 1
    batches = ShardDataset(shards).iterate_batches(5, num_workers=2)
    assert [i for batch, _ in batches for i, _ in _identify(images, batch)] == list(range(COUNT))
    stream = real_batches(ShardDataset(shards), batch_size=4, rank=0, world_size=1, seed=0, start_nimg=0,
                          num_workers=2)  # fmt: skip
    first_epoch = [i for _ in range(8) for i, _ in _identify(images, next(stream)[0])]
    assert len(set(first_epoch)) == 32  # 8 batches of a shuffled epoch of 37 images
