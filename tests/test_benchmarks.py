"""The network benchmark runs end to end, including the side-by-side path for NVIDIA's code.

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
