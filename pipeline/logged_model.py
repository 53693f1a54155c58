"""Log the trained generator as an MLflow model, so it is listed under the experiment's "Logged models",
carries the run's params and its evaluation metrics, and can be registered in the Model Registry.

The model is a pyfunc (:mod:`pipeline.generator_model`, logged as code, never pickled) with a copy of the
`stylegan` package, the generator, its W average and its training config as artifacts, and a signature:
a table of `seed` / `psi` / `class_idx` in, uint8 images `[N, H, W, C]` out.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

import stylegan
from pipeline import generator_model
from stylegan.serialization import load_network

MODEL_NAME = "generator"
MODEL_TYPE = "stylegan-generator"
MODEL_CODE = Path(generator_model.__file__)
# What the model's code imports (its `stylegan` copy included), pinned to the versions it was logged with.
REQUIREMENTS = ("torch", "numpy", "pandas", "scipy", "safetensors", "pillow", "tqdm")
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def generator_signature(network_path: str | Path) -> ModelSignature:
    """Seeds and truncation in, one uint8 image ``[H, W, C]`` per row out (the network at `network_path`)."""
    network = load_network(network_path)
    resolution, channels = int(network.img_resolution), int(network.img_channels)
    inputs = [ColSpec("long", "seed"), ColSpec("double", "psi", required=False)]
    if int(network.c_dim) > 0:
        inputs.append(ColSpec("long", "class_idx"))
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, resolution, resolution, channels))]),
        params=ParamSchema(
            [ParamSpec("noise_mode", "string", "const"), ParamSpec("truncation_cutoff", "long", 0)]
        ),
    )


def pinned_requirements(names: tuple[str, ...] = REQUIREMENTS) -> list[str]:
    pins = []
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")  # a local build tag (+cpu) is no PyPI version
    return pins


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the global tracking URI: point it at the run's store meanwhile, and
    keep the download bar of the check that loads the model back out of the stage's log."""
    previous = mlflow.get_tracking_uri()
    bar = os.environ.get(_PROGRESS_BAR)
    mlflow.set_tracking_uri(uri)
    os.environ[_PROGRESS_BAR] = "false" if bar is None else bar
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if bar is None:
            os.environ.pop(_PROGRESS_BAR, None)


def log_generator(
    run_id: str,
    tracking_uri: str,
    network: str | Path,
    w_avg: str | Path | None = None,
    config: str | Path | None = None,
    name: str = MODEL_NAME,
    tags: dict[str, str] | None = None,
) -> ModelInfo:
    """Log the generator at `network` (with its W average and training config) as an output model of the
    run `run_id`, in the run's experiment, with the run's params. Returns MLflow's :class:`ModelInfo`
    (``model_id``, ``model_uri``). Logging loads the model back and generates one image from it."""
    artifacts = {"network": str(network)}
    if w_avg is not None:
        artifacts["w_avg"] = str(w_avg)
    if config is not None:
        artifacts["config"] = str(config)
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    model = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        tags=tags,
        params=dict(run.data.params),
        model_type=MODEL_TYPE,
    )
    signature = generator_signature(network)
    example = pd.DataFrame({"seed": [0], "psi": [1.0]})
    if "class_idx" in signature.inputs.input_names():
        example["class_idx"] = 0
    with _tracking_uri(tracking_uri):
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model.model_id,
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            code_paths=[str(Path(stylegan.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=pinned_requirements(),
        )
