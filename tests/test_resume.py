"""Resuming after ``kill -9``: a run killed mid-training and restarted ends bit-identical to one that
was never interrupted (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from stylegan.training import CheckpointManager, TrainingConfig, resolve_config, train
from stylegan.training.data import TensorImageDataset

TINY = dict(
    batch=4, batch_gpu=4, channel_base=512, channel_max=32, z_dim=32, w_dim=32, map=2, mbstd=4,
    num_fp16_res=0, tick_kimg=0.008, snapshot_kimg=0.008, sample_seeds=[0],
    aug_p=0.3, ada_kimg=1, ada_interval=2,
)  # fmt: skip
FINAL_KIMG = 0.04  # 10 minibatches

# The run that gets killed: the same training, but with no end in sight.
CHILD = """
import json, sys, torch
torch.set_num_threads(1)
from stylegan.training import TrainingConfig, train
from stylegan.training.data import TensorImageDataset
images = (torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
config = TrainingConfig.from_dict(json.loads(sys.argv[2]))
train(config, TensorImageDataset(images), sys.argv[1], device="cpu")
"""


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the child runs with one thread too: same kernels, same bits
    yield
    torch.set_num_threads(threads)


def config(kimg: float) -> TrainingConfig:
    return resolve_config("auto", 16, 1, {**TINY, "kimg": kimg})


def dataset() -> TensorImageDataset:
    return TensorImageDataset(
        (torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    )


def _kill_after_first_checkpoint(run_dir) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), json.dumps(config(kimg=1000).to_dict())],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    manager = CheckpointManager(run_dir / "checkpoints")
    deadline = time.monotonic() + 240
    try:
        while not manager.paths():
            if child.poll() is not None:
                pytest.fail(f"training process exited early:\n{child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 240 s")
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return [p.name for p in manager.paths()]


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path):
    killed_dir = tmp_path / "killed"
    written = _kill_after_first_checkpoint(killed_dir)
    checkpoint_nimg = int(written[-1].removeprefix("checkpoint-").removesuffix(".pt"))
    assert 0 < checkpoint_nimg < FINAL_KIMG * 1000

    saved_counters = torch.load(killed_dir / "checkpoints" / written[-1], weights_only=True)["counters"]

    reports = []
    resumed = train(config(FINAL_KIMG), dataset(), killed_dir, device="cpu", progress_callback=reports.append)
    assert resumed.resumed_from.name == written[-1]
    assert saved_counters["cur_nimg"] == checkpoint_nimg
    assert reports[0].tick == saved_counters["cur_tick"]  # the tick counter continues
    assert reports[0].kimg * 1000 == checkpoint_nimg + 8  # picks up after the checkpoint, not from zero
    assert resumed.cur_nimg == FINAL_KIMG * 1000

    straight = train(config(FINAL_KIMG), dataset(), tmp_path / "straight", device="cpu")
    a = torch.load(resumed.last_checkpoint, weights_only=True)
    b = torch.load(straight.last_checkpoint, weights_only=True)
    for net in ("G", "D", "G_ema"):
        for name, tensor in a[net].items():
            assert torch.equal(tensor, b[net][name]), f"{net}.{name} differs after resuming"
    for opt in ("opt_G", "opt_D"):
        for index, slots in a[opt]["state"].items():
            for slot, tensor in slots.items():
                assert torch.equal(tensor, b[opt]["state"][index][slot]), f"{opt} {index} {slot} differs"
    assert torch.equal(a["augment"]["p"], b["augment"]["p"]) and float(a["augment"]["p"]) != pytest.approx(
        0.3
    )
    assert torch.equal(a["loss"]["pl_mean"], b["loss"]["pl_mean"])
    assert {k: v for k, v in a["counters"].items() if k != "elapsed_sec"} == {
        k: v for k, v in b["counters"].items() if k != "elapsed_sec"
    }
