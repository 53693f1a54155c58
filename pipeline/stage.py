"""What every DVC stage script shares: logging, validated params, a clean exit on bad input.

Exit codes: 0 done; :data:`EXIT_BAD_PARAMS` (2) the params file was refused, before any work; 1 the stage
failed with a message the user can act on (:class:`StageError`, a full disk); anything else is a bug,
with its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from pipeline.params import PARAMS_FILE, Params, ParamsError, load_params
from stylegan.files import atomic_write_json, is_disk_full

#: Seconds each stage last ran in this working copy, for the report (not a DVC output: a stage restored
#: from DVC's cache did not run, and keeps the time of its last real run).
TIMINGS_FILE = Path(".cache/stage_timings.json")

EXIT_FAILED = 1
EXIT_BAD_PARAMS = 2


class StageError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def run_stage(name: str, body: Callable[[Params], None], params_file: str = PARAMS_FILE) -> None:
    """Validate the params file, then run `body`. Bad params exit with code 2 before any work."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params = load_params(params_file)
    except ParamsError as exc:
        _exit(EXIT_BAD_PARAMS, f"{name}: {exc}\nNothing was run.")
    start = time.perf_counter()
    try:
        body(params)
    except ParamsError as exc:  # a check that needs the model library (see pipeline.training)
        _exit(EXIT_BAD_PARAMS, f"{name}: {exc}\nNothing was run.")
    except StageError as exc:
        _exit(EXIT_FAILED, f"{name}: {exc}")
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        _exit(EXIT_FAILED, f"{name}: the disk is full: {exc}\nFree some space and run the stage again: "
              "the files written before are intact, none was left half-written.")  # fmt: skip
    record_timing(name, time.perf_counter() - start)


def _exit(code: int, message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def record_timing(stage: str, seconds: float, path: Path = TIMINGS_FILE) -> None:
    timings = read_timings(path)
    timings[stage] = round(seconds, 3)
    atomic_write_json(path, timings)


def read_timings(path: Path = TIMINGS_FILE) -> dict[str, float]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
