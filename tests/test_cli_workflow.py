"""`python -m stylegan ...` as a user types it (issue 16): the negative psi list of its own help, one-line
errors for an unusable device, help text on every option, the final progress line written once, and
which W average truncation uses. Each runs the real command in a child process."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch
from tqdm import tqdm

from stylegan.__main__ import _advance, _parser
from stylegan.networks_stylegan2 import Generator as StyleGAN2
from stylegan.serialization import save_network

pytestmark = pytest.mark.slow  # each test starts Python with torch


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("net") / "G.safetensors"
    save_network(
        path,
        StyleGAN2(
            z_dim=16,
            c_dim=0,
            w_dim=16,
            img_resolution=16,
            img_channels=3,
            mapping_kwargs={"num_layers": 2},
            synthesis_kwargs={"channel_base": 256, "channel_max": 16},
        ),
    )
    return path


def stylegan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stylegan", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("psis", [["--psis", "-0.5,0,0.5,1"], ["--psis=-0.5,0,0.5,1"], ["--psis", "-1"]])
def test_truncation_takes_the_negative_psi_list_of_its_help(network: Path, tmp_path: Path, psis: list[str]):
    out = tmp_path / "sweep.png"
    result = stylegan("truncation", "--network", str(network), "--seeds", "0,1", *psis, "--out", str(out),
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    columns = len(psis[-1].split("=")[-1].split(","))
    assert PIL.Image.open(out).size == (16 * columns, 16 * 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_an_unavailable_device_is_one_line(network: Path, tmp_path: Path, device: str):
    result = stylegan("generate", "--network", str(network), "--seeds", "0", "--outdir", "out",
                      "--device", device, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m stylegan generate: error: --device {device}: CUDA is not available "
        f"(torch {torch.__version__}: a CPU-only build); use --device cpu or auto"
    ]


def test_a_device_name_torch_does_not_know_is_one_line(network: Path, tmp_path: Path):
    result = stylegan("generate", "--network", str(network), "--seeds", "0", "--outdir", "out",
                      "--device", "gpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("python -m stylegan generate: error: --device gpu: ")


def _options(parser: argparse.ArgumentParser, path: str = "python -m stylegan"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_text():
    missing = [f"{path} {'/'.join(action.option_strings) or action.dest}"
               for path, action in _options(_parser()) if not (action.help or "").strip()]  # fmt: skip
    assert missing == []
    # and `--help` of every command prints without error
    for command in ("generate", "mix", "truncation", "interpolate"):
        result = subprocess.run([sys.executable, "-m", "stylegan", command, "--help"], capture_output=True,
                                text=True)  # fmt: skip
        assert result.returncode == 0 and "--network" in result.stdout


def test_generate_writes_its_final_progress_line_once_and_names_the_w_average(network: Path, tmp_path: Path):
    result = stylegan("generate", "--network", str(network), "--seeds", "0-47", "--batch", "1",
                      "--psi", "0.7", "--outdir", "out", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").glob("seed*.png"))) == 48
    # As a log (DVC, Prefect) keeps it: every carriage-return redraw a line of its own.
    lines = result.stderr.replace("\r", "\n").splitlines()
    assert sum("48/48" in line for line in lines) == 1, lines
    [note] = [line for line in lines if line.startswith("W average:")]
    assert "truncating towards the network's own (mapping.w_avg" in note and "--w-avg FILE" in note


def test_generate_with_a_w_average_file_says_nothing_about_it(network: Path, tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"w_avg": torch.zeros(16)}, str(tmp_path / "w_avg.safetensors"))
    result = stylegan("generate", "--network", str(network), "--w-avg", "w_avg.safetensors", "--seeds", "0",
                      "--psi", "0.5", "--outdir", "out", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "W average" not in result.stderr


def test_the_last_step_is_drawn_by_close_alone():
    # Every update drawn (mininterval 0), as a slow generator's would be: the final state still appears once.
    out = io.StringIO()
    with tqdm(total=6, file=out, mininterval=0, miniters=1, ascii=True) as bar:
        for _ in range(3):
            _advance(bar, 2)
    assert sum("6/6" in line for line in out.getvalue().replace("\r", "\n").splitlines()) == 1
