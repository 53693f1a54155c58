"""`kill -9` of `dvc repro` (its whole process group, pool workers included) while align and then prepare
write their outputs; `dvc repro` again finishes with outputs identical to an uninterrupted run's (the same
DVC hashes), and no half-written file is accepted."""

from __future__ import annotations

import pytest

from tests.crash_helpers import Project

pytestmark = pytest.mark.slow


def outs(project: Project, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in project.lock()[stage]["outs"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash-data")
    straight = Project(root / "straight")
    straight.repro("prepare")

    killed = Project(root / "killed")
    images = killed.path / "data/aligned/images"
    repro = killed.start_repro("prepare")
    repro.wait_for(lambda: images.is_dir() and sum(1 for _ in images.rglob("*.png")) >= 100)
    repro.kill()
    aligned_when_killed = sum(1 for _ in images.rglob("*.png"))

    shards = killed.path / "data/shards"
    repro = killed.start_repro("prepare")
    repro.wait_for(lambda: (shards / "shard-000001.tar").exists())
    repro.kill()
    shards_when_killed = sorted(p.name for p in shards.iterdir())

    output = killed.start_repro("prepare").finish()
    return straight, killed, aligned_when_killed, shards_when_killed, output


def test_the_kills_landed_mid_stage(runs):
    _, _, aligned, shards, _ = runs
    assert 100 <= aligned < 400  # of the 400 demo images
    assert "index.json" not in shards and "shard-000001.tar" in shards and "shard-000007.tar" not in shards


def test_outputs_are_those_of_an_uninterrupted_run(runs):
    straight, killed, _, _, output = runs
    assert "Running stage 'prepare'" in output
    for stage in ("download", "align", "prepare"):
        assert outs(killed, stage) == outs(straight, stage), stage
    assert (killed.path / "data/shards/index.json").read_text() == (
        straight.path / "data/shards/index.json"
    ).read_text()
    assert not [p for p in (killed.path / "data").rglob("*.tmp")]
    status = killed.run("python", "-m", "dvc", "status", "prepare")
    assert "up to date" in status.stdout
