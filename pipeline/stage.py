"""What every DVC stage script shares: logging, validated params, a clean exit on bad input."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.params import PARAMS_FILE, Params, ParamsError, load_params

#: Seconds each stage last ran in this working copy, for the report (not a DVC output: a stage restored
#: from DVC's cache did not run, and keeps the time of its last real run).
TIMINGS_FILE = Path(".cache/stage_timings.json")


class StageError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def run_stage(name: str, body: Callable[[Params], None], params_file: str = PARAMS_FILE) -> None:
    """Validate the params file, then run `body`. Bad params exit with code 2 before any work."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params = load_params(params_file)
    except ParamsError as exc:
        sys.exit(f"{name}: {exc}\nNothing was run.")
    start = time.perf_counter()
    try:
        body(params)
    except StageError as exc:
        sys.exit(f"{name}: {exc}")
    except ParamsError as exc:  # a check that needs the model library (see pipeline.training)
        sys.exit(f"{name}: {exc}\nNothing was run.")
    record_timing(name, time.perf_counter() - start)


def record_timing(stage: str, seconds: float, path: Path = TIMINGS_FILE) -> None:
    timings = read_timings(path)
    timings[stage] = round(seconds, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=2) + "\n")


def read_timings(path: Path = TIMINGS_FILE) -> dict[str, float]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
