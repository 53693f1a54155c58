"""DVC stage `download`: fill data/raw/ from the source named by params `data.source`."""

import logging
from pathlib import Path

from pipeline.download import download
from pipeline.params import Params
from pipeline.stage import run_stage

RAW_DIR = Path("data/raw")


def main(params: Params) -> None:
    source = params.data.source
    summary = download(source, getattr(params.data, source), RAW_DIR)
    logging.info("%s: %s", source, summary)


if __name__ == "__main__":
    run_stage("download", main)
