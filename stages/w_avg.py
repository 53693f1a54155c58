"""DVC stage `w_avg`: the W average of the trained generator (for truncation) and its statistics."""

import logging

from pipeline.evaluation import compute_w_avg
from pipeline.params import Params
from pipeline.stage import run_stage


def main(params: Params) -> None:
    stats = compute_w_avg(params)
    if stats.get("available", True):
        logging.info(
            "W average of %d samples; mean distance to it %.4f", stats["num_samples"], stats["distance_mean"]
        )


if __name__ == "__main__":
    run_stage("w_avg", main)
