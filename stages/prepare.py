"""DVC stage `prepare`: data/aligned/ -> data/shards/ (resized WebDataset shards, index, statistics)."""

import logging
from pathlib import Path

from pipeline.download.manifest import read_manifest
from pipeline.params import Params
from pipeline.shards import prepare_shards
from pipeline.stage import run_stage

ALIGNED_DIR = Path("data/aligned")
SHARDS_DIR = Path("data/shards")


def main(params: Params) -> None:
    p = params.prepare
    summary = prepare_shards(
        ALIGNED_DIR,
        read_manifest(ALIGNED_DIR),
        SHARDS_DIR,
        resolution=p.resolution,
        filter=p.filter,
        crop=p.crop,
        shard_size=p.shard_size,
        workers=p.workers,
    )
    logging.info("%s", summary)


if __name__ == "__main__":
    run_stage("prepare", main)
