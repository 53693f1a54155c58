"""MLflow as its users meet the pipeline's runs (issue 16), on a real SQLite store: experiments open on
the runs table, runs have readable names, the training data is a dataset input with DVC's hash, the
generator is a logged model that loads, predicts and registers, and the report previews with its images."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipeline.evaluation import metric_values
from pipeline.params import Params, parse_params
from pipeline.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_DEVELOPMENT,
    RunInfo,
    reopen_run,
    run_name,
    start_run,
)
from stylegan.generate import Sampler
from stylegan.networks_stylegan2 import Generator as StyleGAN2
from stylegan.serialization import save_network

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def fluent_store(store: str):
    """`mlflow.*` calls (load_model, register_model) on the test store, as a user's script sets it."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    yield store
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("net") / "G_ema.safetensors"
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


# --- experiments and run names --------------------------------------------------------------------------


def test_experiments_are_tagged_as_model_development(store: str, workdir: Path):
    client = MlflowClient(tracking_uri=store)
    params = parse_params({"data": {"source": "flowers102"}, "prepare": {"resolution": 64}})
    with start_run(params, tracking_uri=store) as run:
        pass
    assert client.get_experiment(run.info.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT

    # An experiment made before (untagged) is tagged; one a person set another kind on keeps it.
    old = client.create_experiment("stylegan/flowers102-128px")
    chosen = client.create_experiment("stylegan/flowers102-256px", tags={EXPERIMENT_KIND_TAG: "finetuning"})
    for resolution in (128, 256):
        params = parse_params({"data": {"source": "flowers102"}, "prepare": {"resolution": resolution}})
        with start_run(params, tracking_uri=store):
            pass
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "finetuning"


def test_runs_are_named_after_data_model_and_main_params(store: str, workdir: Path, monkeypatch):
    params = parse_params({"train": {"kimg": 15, "gamma": 0.05, "aug": "ada"}, "prepare": {"resolution": 32}})
    with start_run(params, tracking_uri=store) as run:
        pass
    logged = MlflowClient(tracking_uri=store).get_run(run.info.run_id)
    assert logged.info.run_name == "demo-32px stylegan2 15kimg gamma=0.05 ada"

    monkeypatch.setenv("DVC_EXP_NAME", "gamma2")
    assert run_name(params) == "gamma2"
    preset_gamma = parse_params({"train": {"kimg": 25000, "aug": "noaug"}})
    monkeypatch.delenv("DVC_EXP_NAME")
    assert run_name(preset_gamma) == "demo-32px stylegan2 25000kimg noaug"


# --- the training data as a dataset input, with DVC's hash -----------------------------------------------


@pytest.mark.slow
def test_the_train_stage_logs_the_shards_as_a_dataset_with_dvcs_hash(store: str, tmp_path: Path):
    # A real DVC repo: `prepare` writes data/shards, `train` opens the pipeline's MLflow run; `dvc repro`.
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "prepare.py").write_text(
        textwrap.dedent(
            """
            import json, os
            os.makedirs("data/shards", exist_ok=True)
            for i in range(3):
                open(f"data/shards/shard-{i:06d}.tar", "wb").write(bytes([i]) * 1000)
            json.dump({"count": 30, "resolution": 16}, open("data/shards/index.json", "w"))
            """
        )
    )
    (repo / "train.py").write_text(
        textwrap.dedent(
            """
            from pipeline.params import load_params
            from pipeline.tracking import start_run
            with start_run(load_params("params.yaml")) as run:
                print("run", run.info.run_id)
            """
        )
    )
    (repo / "params.yaml").write_text(yaml.safe_dump({"prepare": {"resolution": 16}}))
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "prepare": {"cmd": f"{sys.executable} prepare.py", "deps": ["prepare.py"],
                                "outs": ["data/shards"]},  # fmt: skip
                    "train": {"cmd": f"{sys.executable} train.py", "deps": ["train.py", "data/shards"],
                              "outs": [{"models/mlflow_run.json": {"cache": False}}]},  # fmt: skip
                }
            }
        )
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(ROOT)}
    env.pop("DVC_EXP_NAME", None)
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "repro"]):  # fmt: skip
        result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    [shards] = lock["stages"]["prepare"]["outs"]
    info = RunInfo.load(repo / "models/mlflow_run.json")
    [dataset_input] = MlflowClient(tracking_uri=store).get_run(info.run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == ("demo-16px", shards["md5"])
    assert dataset.digest.endswith(".dir") and dataset.source_type == "dvc"
    assert json.loads(dataset.source) == {"path": "data/shards", "dvc_md5": shards["md5"]}
    profile = {"size": shards["size"], "files": shards["nfiles"], "count": 30, "resolution": 16}
    assert json.loads(dataset.profile) == profile
    assert {(tag.key, tag.value) for tag in dataset_input.tags} == {("mlflow.data.context", "training")}


# --- the generator as a logged model ----------------------------------------------------------------------


def test_the_generator_is_a_logged_model_that_predicts_and_registers(
    store: str, fluent_store: str, workdir: Path, network: Path
):
    w_avg = workdir / "w_avg.safetensors"
    from safetensors.torch import save_file

    save_file({"w_avg": torch.full((16,), 0.25)}, str(w_avg))
    config = workdir / "G_ema.json"
    config.write_text(json.dumps({"training": {"gamma": 0.05}, "kimg": 15}))
    with start_run(Params(), tracking_uri=store) as run:
        pass
    records = {"fid50k_full": {"available": True, "results": {"fid50k_full": 41.5}}}
    with reopen_run(run.info) as reopened:
        model_id = reopened.log_generator(network, w_avg, config)
        reopened.log_metrics(metric_values(records), model_id=model_id)

    client = MlflowClient(tracking_uri=store)
    [model] = client.search_logged_models([run.info.experiment_id])
    assert (model.model_id, model.name, model.source_run_id) == (model_id, "generator", run.info.run_id)
    assert model.status.to_proto() == model.status.READY.to_proto()
    assert model.params == client.get_run(run.info.run_id).data.params  # the run's params, flattened
    assert model.params["train.kimg"] == "25000.0"
    assert {metric.key: metric.value for metric in model.metrics} == {"fid50k_full": 41.5}

    loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    signature = loaded.metadata.signature
    assert signature.inputs.input_names() == ["seed", "psi"]
    assert signature.outputs.inputs[0].shape == (-1, 16, 16, 3)
    images = loaded.predict(pd.DataFrame({"seed": [3, 4, 5], "psi": [0.5, 1.0, 0.5]}))
    sampler = Sampler.load(network, "cpu", w_avg)
    assert images.dtype == np.uint8 and images.shape == (3, 16, 16, 3)
    assert np.array_equal(images[[0, 2]], sampler.generate([3, 5], 0.5))
    assert np.array_equal(images[1], sampler.generate([4], 1.0)[0])

    version = mlflow.register_model(f"models:/{model_id}", "stylegan-demo")
    registered = mlflow.pyfunc.load_model(f"models:/stylegan-demo/{version.version}")
    assert np.array_equal(registered.predict(pd.DataFrame({"seed": [3], "psi": [0.5]})), images[:1])
    artifacts = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}"))
    assert json.loads((artifacts / "artifacts/G_ema.json").read_text())["kimg"] == 15


# --- the report, previewed alone ----------------------------------------------------------------------


def test_the_logged_report_page_shows_its_images_on_its_own(store: str, workdir: Path):
    folder = workdir / "reports"
    (folder / "images").mkdir(parents=True)
    PIL.Image.new("RGB", (4, 4), (255, 0, 0)).save(folder / "images/grid.png")
    (folder / "index.html").write_text(
        '<img src="images/grid.png" alt="grid"><img src=\'https://example.com/x.png\'><a href="#m">m</a>'
    )
    with start_run(Params(), tracking_uri=store) as run:
        pass
    with reopen_run(run.info) as reopened:
        reopened.log_report(folder)

    client = MlflowClient(tracking_uri=store)
    assert {item.path for item in client.list_artifacts(run.info.run_id, "report")} == {
        "report/index.html",
        "report/images",
    }
    page = Path(client.download_artifacts(run.info.run_id, "report/index.html", str(workdir))).read_text()
    [inlined] = [src for src in page.split('"') if src.startswith("data:image/png;base64,")]
    image = PIL.Image.open(io.BytesIO(base64.b64decode(inlined.split(",", 1)[1])))
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert "images/grid.png" not in page and "'https://example.com/x.png'" in page

