"""Is this the project's interpreter? A stage command (`python -m stages.<name>`) asks before it imports.

DVC runs each stage's `cmd` through the shell, so `python` is whichever one PATH finds first. Run as
`.venv/bin/dvc exp run` from a shell without the virtualenv activated, that is the system Python, and the
stage used to die in an ImportError traceback (`No module named 'PIL'`) far from the cause. This module
uses the standard library only, so it can say what is wrong in one line under any interpreter.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

#: Import names of the dependencies every stage needs (see `pyproject.toml`).
STAGE_MODULES = ("numpy", "PIL", "yaml", "pydantic", "torch", "safetensors", "mlflow", "tqdm")

ACTIVATE_HINT = (
    "run stage commands with the project's virtualenv: `source .venv/bin/activate` first "
    "(then `dvc repro`, `dvc exp run`, ...), or `make run`"
)


class WrongInterpreterError(RuntimeError):
    """The running Python lacks the project's dependencies."""


def missing_modules(modules: Iterable[str] = STAGE_MODULES) -> list[str]:
    """The modules of `modules` this interpreter cannot import (found without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def check_interpreter(modules: Iterable[str] = STAGE_MODULES) -> None:
    """Raise :class:`WrongInterpreterError` naming the interpreter and what it lacks."""
    if missing := missing_modules(modules):
        raise WrongInterpreterError(
            f"{sys.executable} has no {', '.join(missing)}: it is not the project's Python; {ACTIVATE_HINT}"
        )


def require_project_interpreter(modules: Iterable[str] = STAGE_MODULES) -> None:
    """Exit with one line (status 1) when this interpreter lacks the project's dependencies."""
    try:
        check_interpreter(modules)
    except WrongInterpreterError as exc:
        sys.exit(f"stage command: {exc}")
