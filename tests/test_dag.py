"""The whole demo DAG in a real DVC repo in a temp dir, on tiny params, run by the Prefect flow
(`python -m pipeline.flow`, on Prefect's temporary server): outputs, caching (a second run of the flow
or of `dvc repro` does nothing), targeted reruns.

The flow runs in a child process, as a deployment's worker would."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.flow import StageOutcome

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", "pyproject.toml")
STAGES = ["check", "download", "align", "prepare", "train", "w_avg", "evaluate", "report"]

FLOW_ROW = re.compile(r"^\s+(?P<stage>\S+)\s+(?P<outcome>ran|up to date|restored from run cache)\s+[\d.]+ s$")

pytestmark = pytest.mark.slow


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["demo"].update(count=48, resolution=32)
    params["align"].update(method="center_crop", output_size=32)
    params["prepare"].update(resolution=16, shard_size=20)
    params["model"].update(z_dim=16, w_dim=16, channel_base=128, channel_max=16)
    params["train"].update(kimg=0.064, batch=8, tick_kimg=0.032, snapshot_kimg=0.032, workers=0)
    params["train"]["sample_seeds"] = [0, 1, 2, 3]
    params["w_avg"].update(num_samples=256, batch=128)
    params["eval"].update(metrics=["fid50k_full", "kid50k_full", "pr50k3_full"], num_gen=32, num_real=32,
                          batch=16)  # fmt: skip
    params["report"].update(grid_seeds=[0, 1, 2, 3], truncation_sweep=[0.0, 1.0], interpolation_frames=2)
    params["report"].update(mixing_rows=[1, 2], mixing_cols=[3, 4], interpolation_seeds=[0, 1])
    return params


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


def flow_outcomes(repo: Path, env: dict) -> list[tuple[str, str]]:
    """(stage, outcome) per line of the summary that `python -m pipeline.flow` prints."""
    result = run([sys.executable, "-m", "pipeline.flow", "--repo-dir", str(repo)], repo, env)
    rows = (FLOW_ROW.match(line) for line in result.stdout.splitlines())
    return [(row["stage"], row["outcome"]) for row in rows if row]


def copy_project(repo: Path, files: tuple[str, ...] = PROJECT_FILES) -> None:
    """The project's `files` (folders without bytecode) copied into the folder `repo`."""
    for name in files:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)


def project_repo(tmp_path_factory, name: str, params: dict) -> tuple[Path, dict]:
    """A copy of the project with `params` as its params.yaml, as a fresh git + DVC repo; and the
    environment to run its commands in (this interpreter, a private MLflow store and detector cache)."""
    repo = tmp_path_factory.mktemp(name)
    copy_project(repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
        "STYLEGAN_CACHE_DIR": str(tmp_path_factory.mktemp("detectors")),
    }
    env.pop("DVC_ROOT", None)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "config", "user.name", "test"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        run(cmd, repo, env)
    return repo, env


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo, env = project_repo(tmp_path_factory, "dag", tiny_params())
    first = flow_outcomes(repo, env)
    second = flow_outcomes(repo, env)
    return repo, env, first, second


def test_flow_runs_the_dag_in_order_and_writes_every_output(repo):
    path, _, first, _ = repo
    assert first == [(stage, StageOutcome.RAN.value) for stage in STAGES]
    for out in ("data/shards/index.json", "models/G_ema.safetensors", "models/w_avg.safetensors",
                "plots/train.tsv", "metrics/train.json", "reports/index.html"):  # fmt: skip
        assert (path / out).is_file(), out
    records = json.loads((path / "metrics/eval_provenance.json").read_text())
    # fid50k_full of 32 generated images is reported as fid32_full: a name never overstates the count.
    assert records["fid32_full"]["available"] and records["fid32_full"]["value"] > 0
    fid = records["fid32_full"]
    assert fid["metric"] == "fid50k_full" and "instead of the 50,000" in fid["note"]
    assert records["kid32_full"]["available"]
    assert records["fid32_full"]["num_gen"] == 32
    # VGG16 cannot be downloaded offline: reported unavailable with the reason, never a number.
    pr = records["pr32_3_full"]
    if not pr["available"]:
        assert pr["value"] is None and "vgg16" in pr["reason"].lower()
    # The metrics file DVC shows: one number per result key, nothing else.
    metrics = json.loads((path / "metrics/eval.json").read_text())
    assert metrics["fid32_full"] == records["fid32_full"]["value"] and "fid50k_full" not in metrics
    assert all(isinstance(value, float) for value in metrics.values())
    index = json.loads((path / "data/shards/index.json").read_text())
    assert index["count"] == 48 and index["resolution"] == 16


def test_dvc_shows_flat_metrics_and_provenance_keeps_no_machine_paths(repo):
    path, env, _, _ = repo
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], path, env).stdout)
    [workspace] = shown.values()
    evaluated = workspace["data"]["metrics/eval.json"]["data"]
    assert evaluated and all(isinstance(value, float) for value in evaluated.values())
    provenance = (path / "metrics/eval_provenance.json").read_text()
    for machine_path in (str(path), str(Path.home()), str(ROOT), sys.prefix):
        assert machine_path not in provenance
    assert '"sha256"' in provenance and '"timing"' in provenance


def test_evaluate_logs_the_generator_as_an_mlflow_model_with_its_metrics(repo):
    path, env, _, _ = repo
    from mlflow import MlflowClient

    from pipeline.tracking import RunInfo

    info = RunInfo.load(path / "models/mlflow_run.json")
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    [model] = client.search_logged_models([info.experiment_id])
    assert model.source_run_id == info.run_id
    metrics = json.loads((path / "metrics/eval.json").read_text())
    assert metrics.items() <= {metric.key: metric.value for metric in model.metrics}.items()
    [dataset] = client.get_run(info.run_id).inputs.dataset_inputs
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    assert dataset.dataset.digest == lock["stages"]["prepare"]["outs"][0]["md5"]


def test_second_flow_run_finds_every_stage_up_to_date(repo):
    _, _, _, second = repo
    assert second == [(stage, StageOutcome.UP_TO_DATE.value) for stage in STAGES]


def test_second_repro_does_nothing(repo):
    path, env, _, _ = repo
    result = run([sys.executable, "-m", "dvc", "repro"], path, env)
    assert ran_stages(result.stdout) == []
    assert "up to date" in result.stdout


def test_prepare_param_change_reruns_prepare_only(repo):
    path, env, _, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["prepare"]["filter"] = "box"
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run([sys.executable, "-m", "dvc", "repro", "prepare"], path, env)
    # check validates the changed file first; its output does not change, so only prepare follows.
    assert ran_stages(result.stdout) == ["check", "prepare"]
    # Only the stages that read the shards see the change (w_avg reads the generator, not yet rebuilt).
    status = run([sys.executable, "-m", "dvc", "status", "--json"], path, env)
    assert set(json.loads(status.stdout)) == {"train", "evaluate", "report"}
