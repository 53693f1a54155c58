"""Damaged checkpoints: a truncated, corrupted, NaN-holding or code-carrying newest checkpoint is detected,
named in a warning, and training falls back to the previous good one (ending bit-identical to a run that
never saw the damage); nothing in a checkpoint ever runs."""

from __future__ import annotations

import logging
import math
import os

import pytest
import torch

from pipeline.pretrained import load_pretrained
from pipeline.stage import StageError
from stylegan.training import CheckpointManager, resolve_config, train
from stylegan.training.checkpoint import FORMAT, atomic_save, content_digest, load_checkpoint
from stylegan.training.data import TensorImageDataset

TINY = dict(
    batch=4, batch_gpu=4, kimg=0.016, channel_base=512, channel_max=32, z_dim=32, w_dim=32, map=2, mbstd=4,
    num_fp16_res=0, tick_kimg=0.004, snapshot_kimg=0.004, sample_seeds=[0], ada_kimg=0.1,
)  # fmt: skip
LOGGER = "stylegan.training.checkpoint"


class SystemCall:
    """A pickle payload that runs a shell command when unpickled by a loader that allows code."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _state(value: float) -> dict:
    return {
        "G": {"w": torch.full([64], float(value))},
        "counters": {"cur_nimg": 0 if math.isnan(value) else int(value)},
    }


def _manager_with_two(tmp_path) -> tuple[CheckpointManager, list]:
    manager = CheckpointManager(tmp_path, keep=5)
    return manager, [manager.save(_state(nimg), nimg) for nimg in (10, 20)]


def _expect_fallback(manager, caplog, newest, why: str) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        path, state = manager.load_latest()
    assert path.name == "checkpoint-000000000010.pt" and float(state["G"]["w"][0]) == 10
    warning = next(r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert warning.startswith(f"skipping checkpoint {newest.name}; falling back to an older one")
    assert why in warning


def test_a_truncated_newest_checkpoint_falls_back(tmp_path, caplog):
    manager, (_, newest) = _manager_with_two(tmp_path)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    _expect_fallback(manager, caplog, newest, "cannot read checkpoint")


def test_a_corrupted_byte_in_the_weights_is_caught_by_the_recorded_sha256(tmp_path, caplog):
    manager, (_, newest) = _manager_with_two(tmp_path)
    data = bytearray(newest.read_bytes())
    at = data.find(torch.full([64], 20.0).numpy().tobytes())
    assert at > 0
    data[at + 100] ^= 0x01  # one bit of one weight: torch.load alone reads it without complaint
    newest.write_bytes(bytes(data))
    assert float(torch.load(newest, weights_only=True)["G"]["w"][25]) != 20.0
    _expect_fallback(manager, caplog, newest, "contents do not match the sha256")


def test_a_checkpoint_with_nan_weights_falls_back(tmp_path, caplog):
    manager, (_, newest) = _manager_with_two(tmp_path)
    state = {**_state(math.nan), "format": FORMAT}  # written around CheckpointManager.save, which refuses it
    atomic_save({**state, "sha256": content_digest(state)}, newest)
    _expect_fallback(manager, caplog, newest, "non-finite weights in G.w")


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path, caplog):
    manager, (_, newest) = _manager_with_two(tmp_path)
    marker = tmp_path / "payload-ran"
    torch.save({"format": FORMAT, "G": SystemCall(f"touch {marker}")}, newest)
    _expect_fallback(manager, caplog, newest, "cannot read checkpoint")
    assert not marker.exists()
    with pytest.raises(StageError, match=r"train.resume_from: .*checkpoint-000000000020.pt: cannot read"):
        load_pretrained(str(newest))  # the same file given as a source to fine-tune from
    assert not marker.exists()


def test_no_usable_checkpoint_at_all_says_so(tmp_path, caplog):
    manager, paths = _manager_with_two(tmp_path)
    for path in paths:
        path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert manager.load_latest() is None
    assert "none of the 2 checkpoints" in caplog.text and "starting afresh" in caplog.text


def test_checkpoints_record_and_verify_their_sha256(tmp_path):
    manager, (_, newest) = _manager_with_two(tmp_path)
    raw = torch.load(newest, weights_only=True)
    assert raw["sha256"] == content_digest({k: v for k, v in raw.items() if k != "sha256"})
    assert "sha256" not in load_checkpoint(newest)
    old_style = tmp_path / "old.pt"  # checkpoints from before the digest still load
    torch.save({"format": FORMAT, **_state(5)}, old_style)
    assert float(load_checkpoint(old_style)["G"]["w"][0]) == 5


@pytest.mark.parametrize("damage", ["truncate", "nan"])
def test_training_resumes_from_the_previous_good_checkpoint_and_ends_bit_identical(tmp_path, caplog, damage):
    images = (torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    config = resolve_config("auto", 16, 1, TINY)
    straight = train(config, TensorImageDataset(images), tmp_path / "straight", device="cpu")

    run_dir = tmp_path / "damaged"
    train(resolve_config("auto", 16, 1, {**TINY, "kimg": 0.012}), TensorImageDataset(images), run_dir,
          device="cpu")  # fmt: skip
    manager = CheckpointManager(run_dir / "checkpoints")
    newest = manager.paths()[-1]
    assert newest.name == "checkpoint-000000000012.pt"
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:1000])
    else:
        state = load_checkpoint(newest)
        state["G_ema"]["synthesis.b4.const"][0, 0, 0] = math.inf
        state = {**state, "format": FORMAT}
        atomic_save({**state, "sha256": content_digest(state)}, newest)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        resumed = train(config, TensorImageDataset(images), run_dir, device="cpu")
    assert resumed.resumed_from.name == "checkpoint-000000000008.pt"
    assert f"skipping checkpoint {newest.name}" in caplog.text
    a, b = load_checkpoint(resumed.last_checkpoint), load_checkpoint(straight.last_checkpoint)
    for net in ("G", "D", "G_ema"):
        for name, tensor in a[net].items():
            assert torch.equal(tensor, b[net][name]), f"{net}.{name} differs"
