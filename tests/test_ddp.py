"""Multi-process training with torchrun on the CPU (gloo): the same result as one process with the same
global batch, and the launch entry point on real shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from pipeline.shards import prepare_shards
from stylegan.serialization import load_network

# The two runs see the same images and latents per sample (the loop's global order), and the sources of
# per-process randomness are switched off: synthesis noise, style mixing, augmentation and the path
# length penalty, whose running mean is a per-process batch statistic. R1 is per image and stays on.
WORKER = """
import json, sys, torch
torch.set_num_threads(1)
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.training import init_distributed, resolve_config, shutdown_distributed, train
from stylegan.training.data import TensorImageDataset

ctx = init_distributed("cpu")
config = resolve_config("auto", 16, ctx.world_size, json.loads(sys.argv[2]))
torch.manual_seed(0)
G = Generator(32, 0, 32, 16, 3, mapping_kwargs={"num_layers": 2},
              synthesis_kwargs={"channel_base": 512, "channel_max": 32, "use_noise": False})
D = Discriminator(0, 16, 3, channel_base=512, channel_max=32, epilogue_kwargs={"mbstd_group_size": 4})
images = (torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
try:
    train(config, TensorImageDataset(images), sys.argv[1], distributed=ctx, G=G, D=D)
finally:
    shutdown_distributed()
"""
COMPARABLE = dict(
    batch=8, batch_gpu=4, kimg=0.032, num_fp16_res=0, aug="noaug", style_mixing_prob=0, pl_weight=0, gamma=1,
    tick_kimg=0.016, snapshot_kimg=0.008, sample_seeds=[0], ema_kimg=0.01,
)  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _checkpoints(run_dir) -> list[dict]:
    return [
        torch.load(p, weights_only=True) for p in sorted((run_dir / "checkpoints").glob("checkpoint-*.pt"))
    ]


def _assert_close(a: dict, b: dict, atol: float = 0, exact: bool = False) -> None:
    for name, tensor in a.items():
        if name.endswith("w_avg"):  # a per-process running mean of w, unused in training (psi = 1)
            continue
        if exact:
            assert torch.equal(tensor, b[name]), name
        else:
            torch.testing.assert_close(b[name], tensor, rtol=0, atol=atol, msg=name)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    overrides = json.dumps(COMPARABLE)
    _run([sys.executable, str(script), str(tmp_path / "one"), overrides])
    _run([*TORCHRUN, str(script), str(tmp_path / "two"), overrides])
    one, two = _checkpoints(tmp_path / "one"), _checkpoints(tmp_path / "two")
    assert [c["counters"]["cur_nimg"] for c in one] == [c["counters"]["cur_nimg"] for c in two] == [8, 24, 32]
    assert len(two[-1]["rng"]["ranks"]) == 2  # every rank's generator state, for an exact resume

    # After the first minibatch G is bit-identical: Gmain is one backward pass per round, and summing the
    # two ranks' gradients is the same addition as accumulating two rounds. A D phase makes two passes
    # per round (fakes, then reals), which one process adds up in another order: equal up to rounding.
    _assert_close(one[0]["G"], two[0]["G"], exact=True)
    _assert_close(one[0]["D"], two[0]["D"], atol=1e-6)
    # Later, Adam's normalisation amplifies those rounding differences where gradients are near zero.
    for net in ("G", "D", "G_ema"):
        _assert_close(one[-1][net], two[-1][net], atol=1e-4)
    weight = "synthesis.b16.conv1.weight"
    assert float((one[-1]["G"][weight] - one[0]["G"][weight]).abs().max()) > 1e-2  # it did train


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):
        PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": i % 2})
    prepare_shards(root, rows, root / "shards", resolution=16, shard_size=6, workers=1)
    return root / "shards"


@pytest.mark.slow
def test_torchrun_launch_on_shards(tmp_path, shards):
    run_dir = tmp_path / "run"
    job = {
        "run_dir": str(run_dir),
        "data": str(shards),
        "cfg": "auto",
        "mirror": True,
        "use_labels": True,
        "workers": 0,
        "network_out": str(tmp_path / "G_ema.safetensors"),
        "overrides": {
            "batch": 4, "kimg": 0.024, "channel_base": 512, "channel_max": 32, "z_dim": 32, "w_dim": 32,
            "map": 2, "mbstd": 2, "num_fp16_res": 0, "tick_kimg": 0.008, "snapshot_kimg": 0.016,
            "sample_seeds": [0, 1], "ada_kimg": 1,
        },
    }  # fmt: skip
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))
    result = _run([*TORCHRUN, "-m", "stylegan.training.launch", str(job_path)])

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["kimg"] for m in lines] == [0.004, 0.012, 0.02, 0.024]  # one line per tick: rank 0 only
    assert all(m["augment_p"] >= 0 and m["loss_D"] > 0 for m in lines)
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())] == [
        "checkpoint-000000000020.pt", "checkpoint-000000000024.pt"
    ]  # fmt: skip
    assert len(list((run_dir / "samples").glob("samples-*.png"))) == 3  # tick 0 and both checkpoints
    assert "rank 0: tick 3" in result.stderr and "rank 1:" not in result.stderr

    G_ema = load_network(tmp_path / "G_ema.safetensors")
    assert (G_ema.c_dim, G_ema.img_resolution) == (2, 16)
    saved = _checkpoints(run_dir)[-1]["G_ema"]
    for name, tensor in G_ema.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
