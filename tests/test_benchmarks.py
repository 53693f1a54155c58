"""The network and allocator benchmarks run end to end, including the side-by-side path for NVIDIA's code.

NVIDIA's code is not shipped, so a stand-in checkout re-exports our own networks under
``training/networks.py``: that exercises the plumbing (constructor kwargs, state-dict names) that a
real checkout goes through. Timings are not asserted here: the benchmark prints them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

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
    roof_line = next(line for line in result.stdout.splitlines() if line.startswith("compute roof"))
    step_gflop = float(re.search(r"the fast train step is ([0-9.]+) GFLOP", roof_line).group(1))
    # the reference network does ~0.7 GFLOP of convolutions per image forward, twice that backward
    assert 2 * 2.0 < step_gflop < 2 * 2.4
    for name in ("fast reaches", "ref reaches", "official reaches"):
        assert name in roof_line


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


def _bench_networks_module():
    spec = importlib.util.spec_from_file_location("bench_networks", ROOT / "benchmarks" / "bench_networks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_counted_flops_covers_forward_and_both_backward_products():
    bench = _bench_networks_module()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    a = torch.randn(5, 7, requires_grad=True)
    b = torch.randn(7, 3)

    def step():
        (F.conv2d(x, w, padding=1).sum() + (a @ b).sum()).backward()

    conv_forward = 2 * 2 * 6 * 4 * 3 * 3 * 8 * 8  # multiply-adds per output pixel, over every output
    matmul_forward = 2 * 5 * 7 * 3
    # conv: forward, grad of x, grad of w; matmul: forward and the grad of a only (b needs none)
    assert bench.counted_flops(step) == 3 * conv_forward + 2 * matmul_forward


def test_matmul_flop_rate_is_a_plausible_rate():
    bench = _bench_networks_module()
    rate = bench.matmul_flop_rate(torch.device("cpu"), lambda: None, size=256, repeats=2)
    assert 1e8 < rate < 1e14


def test_bench_progressive_prints_a_ratio_per_family_and_resolution():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_progressive.py", "--final", "8", "--batch", "4", "--ticks", "1",
         "--channel-base", "128", "--channel-max", "16", "--z-dim", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["8"]]
    assert len(rows) == 1
    sg2, progan, progan_ratio, sg1, sg1_ratio = map(float, rows[0][1:])  # img/s printed to 0.1
    assert progan_ratio == pytest.approx(progan / sg2, rel=0.1)
    assert sg1_ratio == pytest.approx(sg1 / sg2, rel=0.1)


@pytest.mark.slow
def test_gpu_check_script_writes_json_and_a_summary_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh with tiny networks on the CPU (for its syntax and output format; the figures
    come from a GPU). torch.compile runs with the eager backend, which traces without compiling code."""
    checkout = tmp_path / "stylegan2-ada-pytorch"
    (checkout / "training").mkdir(parents=True)
    (checkout / "training" / "networks.py").write_text(
        "from stylegan.networks_stylegan2 import Discriminator, Generator  # noqa: F401\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--resolutions", "8", "--batch", "4",
         "--channel-base", "64", "--channel-max", "8", "--z-dim", "8", "--mapping-layers", "2",
         "--steps", "2", "--warmup", "1", "--compile-backend", "eager", "--official-repo", str(checkout)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OUT": str(out)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.txt", "nvidia-smi.txt"]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["machine"]["device"] == "cpu" and data["skipped"] == []
    assert data["roof"]["fp32_flops"] > 0 and data["roof"]["fp16_flops"] > 0
    entry = data["resolutions"]["8"]
    assert entry["step_gflop"] > 0 and entry["parameters"]["G"] > 0 and entry["parameters"]["D"] > 0
    variants = entry["variants"]
    expected = {"fp32", "mixed", "mixed_cl", "official_fp32", "official_mixed", "loop"}
    assert expected | {"fp32_compiled", "mixed_cl_compiled"} == set(variants)
    for name in expected - {"loop"} | {"fp32_compiled", "mixed_cl_compiled"}:
        timed = variants[name]
        assert timed["img_per_sec"] > 0 and timed["peak_mem_mb"] > 0 and 0 < timed["fraction_of_peak"] < 1
    assert variants["fp32"]["speedup_vs_official"] > 0 and variants["mixed"]["speedup_vs_official"] > 0
    assert variants["fp32_compiled"]["compile_s"] > 0 and variants["loop"]["img_per_sec"] > 0
    diff = entry["mixed_vs_fp32"]
    assert diff["fp16_used"] is False and diff["G_max_abs"] == 0  # float16 is CUDA-only: identical here
    text = (out / "gpu_check.txt").read_text()
    assert text.startswith("GPU check on CPU") and "8 px, batch 4" in text and "vs NVIDIA's code" in text
    assert "mixed vs fp32: G images max |diff| 0" in text and text == result.stdout


def test_bench_stylegan3_compares_configs_and_an_official_checkout(tmp_path):
    checkout = tmp_path / "stylegan3"
    (checkout / "training").mkdir(parents=True)
    (checkout / "training" / "networks_stylegan3.py").write_text(
        "from stylegan.networks_stylegan3 import StyleGAN3Generator as Generator  # noqa: F401\n"
    )
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_stylegan3.py", "--resolution", "16", "--batch", "2",
         "--ticks", "1", "--channel-base", "256", "--channel-max", "16", "--z-dim", "8", "--rounds", "1",
         "--official-repo", str(checkout)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert float(rows["stylegan2"][1]) == 1.0
    for name in ("stylegan3-t", "stylegan3-r"):
        assert float(rows[name][0]) > 0  # training img/s, then one G step each side and their ratio
    assert len([line for line in result.stdout.splitlines() if line.strip().startswith("stylegan3-")]) == 4


@pytest.mark.slow
def test_demo_fid_trains_each_candidate_for_its_time_and_prints_the_fid_table(tmp_path):
    from tests.test_dag import tiny_params

    params = tiny_params()
    params["eval"].update(num_gen=16, num_real=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "benchmarks/demo_fid.py", "--params", str(tmp_path / "params.yaml"),
         "--seconds", "3", "--marks", "3", "--candidate", "b4=train.batch=4", "--only", "params.yaml", "b4",
         "--final-gen", "16", "--final-real", "16", "--floor", "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| candidate | overrides | FID at 3 s (kimg) | FID 16/16 |"
    assert rows[1].startswith("| params.yaml | params.yaml | ")
    assert rows[2].startswith("| b4 | train.batch=4 | ")
    for row in rows[1:]:
        cells = row.strip("| ").split(" | ")[2:]
        assert len(cells) == 2 and all(float(cell.split()[0]) > 0 for cell in cells), row
    assert re.search(r"real vs other real images, 16/16: FID \d+\.\d", result.stdout)
    assert "time = wall time" in result.stdout
    assert sorted(p.name for p in (tmp_path / "work").glob("samples-*.png")) == [
        "samples-b4-3s.png",
        "samples-params.yaml-3s.png",
    ]
