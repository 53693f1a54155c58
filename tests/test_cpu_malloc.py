"""glibc malloc keeps freed tensor memory for reuse during CPU training (stylegan.cpu_malloc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from stylegan.cpu_malloc import OPT_OUT_VARIABLE

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")

# Runs in a fresh process (allocator settings hold for a whole process). Prints whether the thresholds
# are in effect, then the minor page faults of ten 64 MiB tensors allocated, written and freed in turn,
# after ten to warm up (the heap settles once the first freed chunks coalesce). 64 MiB is above glibc's
# largest adaptive mmap threshold (32 MiB), so by default each tensor is a fresh mapping whose 16384
# pages all fault in.
CHILD = """
import resource, sys, torch
from stylegan import cpu_malloc
if sys.argv[1] == "call":
    cpu_malloc.keep_freed_memory()
elif sys.argv[1] == "train":
    from stylegan.training import resolve_config, train
    from stylegan.training.data import TensorImageDataset
    tiny = dict(batch=2, batch_gpu=2, kimg=0.002, channel_base=64, channel_max=8, z_dim=8, w_dim=8, map=1,
                mbstd=2, num_fp16_res=0, tick_kimg=0.002, snapshot_kimg=1, sample_seeds=[0], aug="noaug")
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    train(resolve_config("auto", 8, 1, tiny), TensorImageDataset(images), sys.argv[2], device="cpu")
print(cpu_malloc._applied)
for _ in range(10):
    torch.empty(1 << 24).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(1 << 24).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_TENSOR = (1 << 24) * 4 // 4096


def run_child(mode: str, tmp_path, **env: str) -> tuple[bool, int]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != OPT_OUT_VARIABLE}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(tmp_path)],
        env=child_env | env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[-2] == "True", int(out[-1])


def test_glibc_defaults_fault_every_large_tensor_back_in(tmp_path):
    applied, faults = run_child("none", tmp_path)
    assert not applied
    assert faults > 9 * PAGES_PER_TENSOR


def test_kept_memory_is_reused_without_page_faults(tmp_path):
    applied, faults = run_child("call", tmp_path)
    assert applied
    assert faults < PAGES_PER_TENSOR / 10, faults


@pytest.mark.slow
def test_cpu_training_keeps_freed_memory(tmp_path):
    applied, faults = run_child("train", tmp_path)
    assert applied
    assert faults < PAGES_PER_TENSOR / 10, faults


@pytest.mark.parametrize(
    "env", [{OPT_OUT_VARIABLE: "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}], ids=["opt-out", "user-tuned"]
)
def test_an_explicit_allocator_choice_is_left_alone(tmp_path, env):
    applied, faults = run_child("call", tmp_path, **env)
    assert not applied
    assert faults > 9 * PAGES_PER_TENSOR
