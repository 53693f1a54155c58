"""What every DVC stage script shares: logging, validated params, a clean exit on bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from pipeline.params import PARAMS_FILE, Params, ParamsError, load_params


class StageError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def run_stage(name: str, body: Callable[[Params], None], params_file: str = PARAMS_FILE) -> None:
    """Validate the params file, then run `body`. Bad params exit with code 2 before any work."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params = load_params(params_file)
    except ParamsError as exc:
        sys.exit(f"{name}: {exc}\nNothing was run.")
    try:
        body(params)
    except StageError as exc:
        sys.exit(f"{name}: {exc}")
