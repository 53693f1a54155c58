"""DVC stage `evaluate`: metrics/eval.json (FID, KID, precision/recall, PPL, ...) for `dvc metrics`."""

from pipeline.evaluation import evaluate
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("evaluate", lambda params: evaluate(params))
