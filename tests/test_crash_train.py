"""`kill -9` of `dvc repro` (its whole process group) during training: at a random point between
checkpoints, while a checkpoint is being written, and while the final network is being written. After each,
`dvc repro` again resumes from the last good checkpoint; in the end the generator is bit-identical to an
uninterrupted run's on the same shards, the records (curves, final metrics) are complete, and no MLflow run
is left RUNNING. Then a typo in the params file followed by `dvc repro` is refused, and the trained model
survives it."""

from __future__ import annotations

import csv
import io
import json
import random
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.crash_helpers import Inotify, Project

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="kills on inotify events")]

# Columns and keys that measure the machine (time, memory), not the training.
MACHINE = {"sec_per_tick", "sec_per_kimg", "img_per_sec", "total_sec", "eta_sec", "peak_mem_mb"}
# Tick 0 is the first minibatch (8 images), then ticks of 64: a checkpoint at the end of each.
CHECKPOINTS = ["checkpoint-000000000072.pt", "checkpoint-000000000136.pt", "checkpoint-000000000200.pt",
               "checkpoint-000000000256.pt"]  # fmt: skip


def curves(project: Project) -> list[dict[str, str]]:
    text = (project.path / "plots/train.tsv").read_text()
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    return [{k: v for k, v in row.items() if k not in MACHINE} for row in rows]


def final_metrics(project: Project) -> dict:
    values = json.loads((project.path / "metrics/train.json").read_text())
    return {k: v for k, v in values.items() if k not in MACHINE}


def kill_between_checkpoints(project: Project, rng: random.Random) -> str:
    repro = project.start_repro("train")
    repro.wait_for(lambda: (folder := project.checkpoint_dir()) is not None and any(folder.iterdir()))
    time.sleep(rng.uniform(0.0, 0.5))  # a tick is about half a second here
    assert repro.running(), "training ended before the kill"
    repro.kill()
    return "between checkpoints"


def kill_while_writing(project: Project, folder_of, prefix: str) -> bool:
    """Kill the moment a temporary file named `prefix...` appears in the folder; whether it was left behind
    (the kill landed mid-write, not after the rename)."""
    repro = project.start_repro("train")
    repro.wait_for(lambda: folder_of() is not None and folder_of().is_dir())
    folder = folder_of()
    watch = Inotify(folder)
    try:
        name = watch.wait_for(prefix, timeout=300, alive=repro.running)
        assert name is not None, f"no {prefix}* file appeared:\n{repro.output()[-3000:]}"
        repro.kill()
    finally:
        watch.close()
    return (folder / name).exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = Project(tmp_path_factory.mktemp("crash") / "base")
    base.repro("prepare")
    straight = base.copy(base.path.parent / "straight")
    straight.repro("train")

    killed = base.copy(base.path.parent / "killed")
    rng = random.Random(14)
    kill_between_checkpoints(killed, rng)
    mid_checkpoint = [kill_while_writing(killed, killed.checkpoint_dir, ".checkpoint-") for _ in range(2)]
    mid_export = kill_while_writing(killed, lambda: killed.path / "models", ".G_ema.safetensors.")
    output = killed.start_repro("train").finish()
    return straight, killed, mid_checkpoint, mid_export, output


def test_every_kill_landed_where_it_was_aimed(runs):
    _, _, mid_checkpoint, mid_export, _ = runs
    assert any(mid_checkpoint), "no kill landed while a checkpoint was being written"
    assert mid_export, "the kill did not land while the final network was being written"


def test_the_final_generator_is_bit_identical_to_an_uninterrupted_run(runs):
    straight, killed, _, _, output = runs
    assert "resumed from" in output
    for name in ("models/G_ema.safetensors", "models/G_ema.json"):
        assert (killed.path / name).read_bytes() == (straight.path / name).read_bytes(), name
    digests = [{out["path"]: out["md5"] for out in p.lock()["train"]["outs"]} for p in (killed, straight)]
    assert digests[0]["models/G_ema.safetensors"] == digests[1]["models/G_ema.safetensors"]  # as DVC has it
    assert sorted(p.name for p in killed.checkpoint_dir().iterdir()) == CHECKPOINTS[-3:]  # no temporaries


def test_records_are_complete_after_the_kills(runs):
    straight, killed, _, _, _ = runs
    assert curves(killed) == curves(straight)
    assert [row["kimg"] for row in curves(killed)] == ["0.008", "0.072", "0.136", "0.200", "0.256"]
    assert final_metrics(killed) == final_metrics(straight)
    assert {"loss_G", "loss_D", "augment_p"} <= set(final_metrics(killed))


def test_no_mlflow_run_is_left_running(runs):
    _, killed, _, _, _ = runs
    client = MlflowClient(killed.env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    statuses = {run.info.status for run in client.search_runs(experiments)}
    assert "RUNNING" not in statuses


def test_a_typo_in_the_params_never_deletes_the_trained_model(runs):
    _, killed, _, _, _ = runs
    project = killed.copy(killed.path.parent / "typo")
    model = (project.path / "models/G_ema.safetensors").read_bytes()
    params = (project.path / "params.yaml").read_text()
    (project.path / "params.yaml").write_text(params.replace("  gamma: 0.05\n", "  gama: 0.05\n"))
    result = project.run("python", "-m", "dvc", "repro", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "check: invalid params in params.yaml:\n  train.gama: unknown key\nNothing was run." in output
    assert "failed to run: python -m stages.check, exited with 2" in output
    assert "Running stage 'train'" not in output
    assert (project.path / "models/G_ema.safetensors").read_bytes() == model
