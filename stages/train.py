"""DVC stage `train`: data/shards/ -> models/G_ema.safetensors, curves, metrics, the MLflow run."""

import logging
from pathlib import Path

from pipeline.params import Params
from pipeline.stage import StageError, run_stage
from pipeline.training import run_training
from stylegan.training import TrainingDiverged

SHARDS_DIR = Path("data/shards")


def main(params: Params) -> None:
    try:
        final = run_training(params, SHARDS_DIR)
    except TrainingDiverged as exc:  # the MLflow run is already marked FAILED; the message has kimg, phase
        raise StageError(str(exc)) from None
    logging.info("trained to %g kimg: %s", final["kimg"], final)


if __name__ == "__main__":
    run_stage("train", main)
