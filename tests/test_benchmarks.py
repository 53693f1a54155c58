"""The network and allocator benchmarks run end to end, including the side-by-side path for NVIDIA's code.

NVIDIA's code is not shipped, so a stand-in checkout re-exports our own networks under
``training/networks.py``: that exercises the plumbing (constructor kwargs, state-dict names) that a
real checkout goes through. Timings are not asserted here: the benchmark prints them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_networks_runs_side_by_side_with_an_official_checkout(tmp_path):
    checkout = tmp_path / "stylegan2-ada-pytorch"
    (checkout / "training").mkdir(parents=True)
    (checkout / "training" / "networks.py").write_text(
        "from stylegan.networks_stylegan2 import Discriminator, Generator  # noqa: F401\n"
    )
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_networks.py", "--batch", "2", "--rounds", "2",
         "--npz", "tests/reference/sg2ada_G64_D64.npz", "--official-repo", str(checkout)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    train_line = next(line for line in result.stdout.splitlines() if "G+D train step" in line)
    for name in ("fast", "ref", "official", "fast/ref x", "fast/official x"):
        assert name in train_line
    assert "saved for backward per train step: fast" in result.stdout


def test_bench_networks_rejects_a_folder_without_nvidia_networks(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_networks.py", "--batch", "2", "--rounds", "1",
         "--official-repo", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"--official-repo {tmp_path}: no training/networks.py there" in result.stderr


def test_bench_malloc_compares_the_two_allocator_settings_in_child_processes():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_malloc.py", "--pairs", "1", "--ticks", "1", "--resolution", "16",
         "--batch", "4", "--channel-base", "64", "--channel-max", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = [line.split() for line in result.stdout.splitlines()]
    rows = {fields[0]: fields[1:] for fields in table if len(fields) == 4}
    for setting in ("glibc-default", "keep-freed"):
        img_per_sec, faults_per_img, peak_rss = (float(v) for v in rows[setting])
        assert img_per_sec > 0 and faults_per_img >= 0 and peak_rss > 0
    assert "keep-freed / glibc-default: x" in result.stdout
