"""Checkpoint folders per owner (pipeline.run_folders): names, and the start from a sibling's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.run_folders import owner_name, seed_from_siblings
from pipeline.training_metrics import BEST_GENERATOR, STATE_FILE
from stylegan.training.checkpoint import checkpoint_name


def make_run(folder: Path, nimgs: list[int], *, best_kimg: float | None = None) -> None:
    """A run folder as training leaves it: checkpoints, curves, MLflow run id, training-time metrics."""
    (folder / "checkpoints").mkdir(parents=True)
    for nimg in nimgs:
        (folder / "checkpoints" / checkpoint_name(nimg)).write_bytes(f"state at {nimg}".encode())
    (folder / "curves.tsv").write_text("kimg\tloss_G\n" + "".join(f"{n / 1000}\t1.0\n" for n in nimgs))
    (folder / "mlflow_run_id").write_text(f"run-of-{folder.name}")
    measured = [{"kimg": n / 1000, "values": {"fid5k_full": 100 - n / 1000}} for n in nimgs]
    best = None
    if best_kimg is not None:
        best = {"metric": "fid5k_full", "value": 100 - best_kimg, "kimg": best_kimg}
        (folder / BEST_GENERATOR).parent.mkdir()
        (folder / BEST_GENERATOR).write_bytes(b"best G")
    (folder / STATE_FILE).write_text(json.dumps({"measured": measured, "best": best}))


def test_owners_are_the_dvc_experiment_or_the_workspace_by_its_path(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_EXP_NAME", "lr sweep/1")
    assert owner_name() == "exp-lr_sweep_1"
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "one"))
    one = owner_name()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "two"))
    assert one.startswith("workspace-") and owner_name().startswith("workspace-") and owner_name() != one


def test_a_new_folder_starts_from_the_most_advanced_sibling_checkpoint_within_its_length(tmp_path):
    key = tmp_path / "0123456789abcdef"
    make_run(key / "exp-short", [1000, 2000])
    make_run(key / "exp-long", [3000, 4000, 6000], best_kimg=4.0)
    own = key / "exp-new"

    assert seed_from_siblings(own, max_nimg=5000) == key / "exp-long"

    [copied] = (own / "checkpoints").iterdir()
    assert copied.name == checkpoint_name(4000) and copied.read_bytes() == b"state at 4000"
    assert (own / "mlflow_run_id").read_text() == "run-of-exp-long"  # the new MLflow run says it continues
    state = json.loads((own / STATE_FILE).read_text())
    assert [m["kimg"] for m in state["measured"]] == [3.0, 4.0]  # nothing measured after the checkpoint
    assert state["best"]["kimg"] == 4.0 and (own / BEST_GENERATOR).read_bytes() == b"best G"
    # The sibling is untouched, and the copy is the new folder's own: dropping it leaves the original.
    copied.unlink()
    assert (key / "exp-long/checkpoints" / checkpoint_name(4000)).read_bytes() == b"state at 4000"
    assert sorted(p.name for p in (key / "exp-long/checkpoints").iterdir()) == [
        checkpoint_name(n) for n in (3000, 4000, 6000)
    ]


def test_a_best_snapshot_after_the_starting_checkpoint_is_not_taken(tmp_path):
    key = tmp_path / "0123456789abcdef"
    make_run(key / "exp-long", [2000, 6000], best_kimg=6.0)
    seed_from_siblings(key / "exp-new", max_nimg=3000)
    state = json.loads((key / "exp-new" / STATE_FILE).read_text())
    assert state == {"measured": [{"kimg": 2.0, "values": {"fid5k_full": 98.0}}], "best": None}
    assert not (key / "exp-new" / BEST_GENERATOR).exists()


@pytest.mark.parametrize("own_nimgs", [[1000], []])
def test_a_folder_with_checkpoints_keeps_them_and_one_without_siblings_starts_afresh(tmp_path, own_nimgs):
    key = tmp_path / "0123456789abcdef"
    if own_nimgs:
        make_run(key / "exp-own", own_nimgs)
        make_run(key / "exp-other", [5000])
    else:
        key.mkdir()
    assert seed_from_siblings(key / "exp-own", max_nimg=10_000) is None
    found = sorted(p.name for p in (key / "exp-own/checkpoints").glob("*")) if own_nimgs else []
    assert found == [checkpoint_name(n) for n in own_nimgs]


def test_a_run_folder_of_the_layout_without_owners_is_resumed_from(tmp_path):
    key = tmp_path / "0123456789abcdef"
    make_run(key, [2000])  # checkpoints directly under the run key, as before owners
    assert seed_from_siblings(key / "workspace-12345678", max_nimg=10_000) == key
    assert (key / "workspace-12345678/checkpoints" / checkpoint_name(2000)).read_bytes() == b"state at 2000"
