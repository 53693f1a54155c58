"""A full disk (ENOSPC) while writing shards, checkpoints, metrics or the report, on a real filesystem: a
size-limited tmpfs mounted for the test (root only; skipped elsewhere). Each case: a clear error naming the
file, the files written before intact, no half-written file left, and the rerun after space is freed
succeeds with the same result as a run that never ran out of space."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.download.demo import generate_demo
from pipeline.download.manifest import read_manifest
from pipeline.params import ReportParams
from pipeline.report import render_report
from pipeline.shards import prepare_shards
from stylegan.files import DiskFullError, atomic_write_json
from stylegan.training import CheckpointManager, resolve_config, train
from stylegan.training.checkpoint import load_checkpoint
from stylegan.training.data import TensorImageDataset

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    batch=4, batch_gpu=4, kimg=0.016, channel_base=512, channel_max=32, z_dim=32, w_dim=32, map=2, mbstd=4,
    num_fp16_res=0, tick_kimg=0.004, snapshot_kimg=0.004, sample_seeds=[0], ada_kimg=0.1,
)  # fmt: skip


class SmallDisk:
    """A tmpfs of a given size at `path`; `fill` leaves only `free` bytes, `free_space` undoes that."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.filler = path, path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)  # fmt: skip
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")

    def available(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, free: int) -> None:
        with open(self.filler, "ab") as f:
            f.write(b"\0" * max(self.available() - free, 0))

    def free_space(self) -> None:
        self.filler.unlink()

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    disks = []

    def make(name: str, size: int = 64 << 20) -> SmallDisk:
        disk = SmallDisk(tmp_path / name, size)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.unmount()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_checkpoints(small_disk, tmp_path):
    images = (torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    config = resolve_config("auto", 16, 1, TINY)
    straight = train(config, TensorImageDataset(images), tmp_path / "straight", device="cpu")

    disk = small_disk("run")
    short = resolve_config("auto", 16, 1, {**TINY, "kimg": 0.008})
    train(short, TensorImageDataset(images), disk.path, device="cpu")
    manager = CheckpointManager(disk.path / "checkpoints")
    written = {p.name: p.read_bytes() for p in manager.paths()}
    size = max(len(data) for data in written.values())
    disk.fill(free=size // 2)  # room for half a checkpoint
    with pytest.raises(DiskFullError, match=r"No space left on device: '.*checkpoint-000000000012\.pt'"):
        train(config, TensorImageDataset(images), disk.path, device="cpu")
    assert {p.name: p.read_bytes() for p in manager.paths()} == written and temporaries(disk.path) == []

    disk.free_space()
    resumed = train(config, TensorImageDataset(images), disk.path, device="cpu")
    assert resumed.resumed_from.name == "checkpoint-000000000008.pt"
    a, b = load_checkpoint(resumed.last_checkpoint), load_checkpoint(straight.last_checkpoint)
    assert all(torch.equal(t, b["G_ema"][k]) for k, t in a["G_ema"].items())


def _prepare_workspace(root: Path) -> tuple[Path, dict]:
    generate_demo(root / "data/aligned", count=60, resolution=16, workers=1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(resolution=16, shard_size=10, workers=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DVC_ROOT", None)
    return root, env


def _digests(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_shards_through_the_prepare_stage(small_disk, tmp_path):
    reference = tmp_path / "reference"
    generate_demo(reference / "aligned", count=60, resolution=16, workers=1)
    prepare_shards(reference / "aligned", read_manifest(reference / "aligned"), reference / "shards",
                   resolution=16, shard_size=10, workers=1)  # fmt: skip
    expected = _digests(reference / "shards")
    shard_size = max(p.stat().st_size for p in (reference / "shards").glob("shard-*.tar"))

    workspace, env = _prepare_workspace(tmp_path / "workspace")
    disk = small_disk("workspace/data/shards")
    disk.fill(free=int(2.5 * shard_size))  # room for two shards and a half
    command = [sys.executable, "-m", "stages.prepare"]
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()
    assert message[-2].startswith("prepare: the disk is full: [Errno 28] No space left on device: ")
    assert message[-2].endswith("data/shards/shard-000002.tar'") and "Free some space" in message[-1]
    kept = _digests(disk.path)
    assert sorted(kept) == ["filler", "shard-000000.tar", "shard-000001.tar"]  # no index: not complete
    assert all(kept[name] == expected[name] for name in kept if name != "filler")  # the finished ones
    assert temporaries(disk.path) == []

    disk.free_space()
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _digests(disk.path) == expected


@pytest.mark.slow
def test_metrics_through_the_train_stage(small_disk, tmp_path):
    raw = tmp_path / "raw"
    generate_demo(raw, count=16, resolution=16, workers=1)
    workspace = tmp_path / "workspace"
    prepare_shards(raw, read_manifest(raw), workspace / "data/shards", resolution=16, workers=1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(z_dim=16, w_dim=16, channel_base=64, channel_max=16)
    params["train"].update(kimg=0.008, batch=8, tick_kimg=0.008, snapshot_kimg=0.008, workers=0)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("DVC_ROOT", None)

    disk = small_disk("workspace/metrics", size=1 << 20)
    previous = {"kimg": 0.004, "note": "an earlier run's metrics"}
    atomic_write_json(disk.path / "train.json", previous)
    disk.fill(free=0)
    command = [sys.executable, "-m", "stages.train"]
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    full = "train: the disk is full: [Errno 28] No space left on device: 'metrics/train.json'"
    assert full in result.stderr
    assert yaml.safe_load((disk.path / "train.json").read_text()) == previous and temporaries(disk.path) == []

    disk.free_space()
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to do" in result.stderr  # the training itself was kept in its checkpoint
    assert {"loss_G", "loss_D"} <= set(yaml.safe_load((disk.path / "train.json").read_text()))


def test_the_report(small_disk, tmp_path):
    curves = tmp_path / "train.tsv"
    kimg = [0.004 * i for i in range(1, 30)]
    pd.DataFrame({"kimg": kimg, "loss_G": [1 / k for k in kimg], "loss_D": kimg}).to_csv(curves, sep="\t")
    params = ReportParams()
    reference = render_report(tmp_path / "reference", report_params=params, curves_path=curves)

    disk = small_disk("reports", size=4 << 20)
    render_report(disk.path, report_params=params, curves_path=curves.with_suffix(".absent"))
    before = _digests(disk.path)
    disk.fill(free=8 << 10)  # 8 KiB: less than the first plot
    with pytest.raises(DiskFullError, match=r"No space left on device: '.*\.png'"):
        render_report(disk.path, report_params=params, curves_path=curves)
    assert {k: v for k, v in _digests(disk.path).items() if k != "filler"} == before  # the old page
    assert temporaries(disk.path) == []

    disk.free_space()
    index = render_report(disk.path, report_params=params, curves_path=curves)
    assert index.read_text() == reference.read_text().replace(str(reference.parent), str(index.parent))
    shutil.rmtree(tmp_path / "reference")
