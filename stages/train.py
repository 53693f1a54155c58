"""DVC stage `train`: data/shards/ -> models/G_ema.safetensors, curves, metrics, the MLflow run."""

import logging
from pathlib import Path

from pipeline.params import Params
from pipeline.stage import run_stage
from pipeline.training import run_training

SHARDS_DIR = Path("data/shards")


def main(params: Params) -> None:
    final = run_training(params, SHARDS_DIR)
    logging.info("trained to %g kimg: %s", final["kimg"], final)


if __name__ == "__main__":
    run_stage("train", main)
