"""DVC stage `report`: reports/index.html with samples, curves, metrics, data and timings."""

import logging

from pipeline.params import Params
from pipeline.report.collect import build_report
from pipeline.stage import run_stage


def main(params: Params) -> None:
    logging.info("report: %s", build_report(params).resolve())


if __name__ == "__main__":
    run_stage("report", main)
