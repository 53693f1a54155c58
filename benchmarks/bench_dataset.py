"""Throughput of :class:`stylegan.dataset.ShardDataset` against the zip-of-PNGs layout.

The baseline is what StyleGAN2-ADA trains from: ``dataset_tool.py`` stores one PNG per image in an
uncompressed zip, and its ``ImageFolderDataset`` opens the zip once per DataLoader worker and reads
and decodes a random member per item. Both sides here hold byte-identical PNGs (the zip is filled
from the shards), so the comparison is of the containers and the readers, not of the encodings.

    python benchmarks/bench_dataset.py [--count 2000] [--resolution 256] [--workers 0 2]

Prints images/s for each reader and worker count, and the ratio ours / zip.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.shards import prepare_shards
from stylegan.dataset import ShardDataset


class ZipPngDataset(Dataset):
    """Random access to the PNGs of a zip, the layout and access pattern of NVIDIA's dataset tool."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with zipfile.ZipFile(path) as archive:
            self.names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        self._archive: zipfile.ZipFile | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.path)
        with self._archive.open(self.names[index]) as f:
            pixels = np.array(PIL.Image.open(f))
        return torch.from_numpy(pixels).permute(2, 0, 1), torch.zeros(0)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_archive": None}


def make_images(directory: Path, count: int, resolution: int) -> list[dict]:
    """Photo-like test images (smooth colour fields plus grain), so PNG sizes resemble real data."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    rows = []
    for i in range(count):
        coarse = PIL.Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((resolution, resolution), PIL.Image.Resampling.BICUBIC))
        grain = rng.normal(0, 6, smooth.shape)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        PIL.Image.fromarray(pixels).save(directory / f"{i:06d}.png")
        rows.append({"file": f"{i:06d}.png", "label": None})
    return rows


def zip_from_shards(shard_dir: Path, path: Path) -> None:
    """Copy every PNG of the shards into an uncompressed zip laid out as ``dataset_tool.py`` does."""
    index = json.loads((shard_dir / "index.json").read_text())
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        number = 0
        for shard in index["shards"]:
            with tarfile.open(shard_dir / shard["name"]) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".png"):
                        data = tar.extractfile(member).read()
                        archive.writestr(f"{number // 1000:05d}/img{number:08d}.png", data)
                        number += 1
        archive.writestr("dataset.json", json.dumps({"labels": None}))


def images_per_second(dataset: Dataset, workers: int, batch: int, shuffle: bool | None) -> float:
    """One full pass; the clock starts at the first batch, so worker start-up is not counted."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=shuffle)
    iterator = iter(loader)
    first = next(iterator)[0].shape[0]
    start, seen = time.perf_counter(), 0
    for images, _ in iterator:
        seen += images.shape[0]
    elapsed = time.perf_counter() - start
    assert first + seen == len(dataset), (first + seen, len(dataset))
    return seen / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes per reader")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"building {args.count} {args.resolution}px images ...", flush=True)
        rows = make_images(root / "images", args.count, args.resolution)
        prepare_shards(root / "images", rows, root / "shards", resolution=args.resolution, shard_size=500)
        zip_from_shards(root / "shards", root / "dataset.zip")
        shard_bytes = sum(p.stat().st_size for p in (root / "shards").glob("*.tar"))
        zip_bytes = (root / "dataset.zip").stat().st_size
        print(f"shards {shard_bytes / 2**20:.1f} MiB, zip {zip_bytes / 2**20:.1f} MiB")

        # Fresh datasets for every pass, so that each pass checks the sha256s again where asked to.
        readers = {
            "zip + PIL (baseline)": (lambda: ZipPngDataset(root / "dataset.zip"), True),
            "ShardDataset": (lambda: ShardDataset(root / "shards", verify_shards=False), None),
            "ShardDataset, sha256 checked": (lambda: ShardDataset(root / "shards"), None),
        }
        print(f"{'reader':32s} {'workers':>7s} {'images/s':>10s} {'vs zip':>7s}")
        for workers in args.workers:
            # Readers take turns within each round, so a change in machine load hits them alike.
            rates: dict[str, list[float]] = {name: [] for name in readers}
            for _ in range(args.repeats):
                for name, (make, shuffle) in readers.items():
                    rates[name].append(images_per_second(make(), workers, args.batch, shuffle))
            baseline = max(next(iter(rates.values())))
            for name, values in rates.items():
                best = max(values)
                print(f"{name:32s} {workers:7d} {best:10.0f} {best / baseline:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
