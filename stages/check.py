"""DVC stage `check`: validate the whole params file before any stage whose outputs DVC would clear.

DVC deletes a stage's outputs just before it runs the stage's command, so a stage that refuses its params
itself would refuse them too late: a typo in `train` would already have cost the trained model. Every
other stage depends on this stage's output instead, so `dvc repro` stops here, with exit code 2 and a
message naming the key, before anything is deleted. The output's contents never change, so a params
change reruns only the stages whose own params changed. It also writes the params of the stages with
runtime-only settings (`.cache/params/<stage>.json`, see :mod:`pipeline.stage_params`), which those stages
depend on instead of whole sections: `train.workers` or a device never invalidates a result.
"""

from pathlib import Path

from pipeline.family_params import check_family_params
from pipeline.params import Params
from pipeline.stage import run_stage
from pipeline.stage_params import write_stage_params
from stylegan.files import atomic_write_text

CHECKED = Path(".cache/params.checked")


def main(params: Params) -> None:
    check_family_params(params)  # the keys the model family refuses; the schema was checked by run_stage
    write_stage_params(params)
    atomic_write_text(CHECKED, "params.yaml passed `python -m pipeline check params.yaml`\n")


if __name__ == "__main__":
    run_stage("check", main)
