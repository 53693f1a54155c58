"""`dvc.yaml` deps follow the code: every project module a stage imports is one of its deps.

A stage's run reaches more than its import-time closure: model families (and the network classes that
serialised generators name) are imported on demand, so every stage that builds or loads networks is
checked with all of them imported too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("stages", "pipeline", "stylegan")
ON_DEMAND = [
    "stylegan.archs.stylegan2",
    "stylegan.archs.progan",
    "stylegan.archs.stylegan1",
    "stylegan.archs.stylegan3",
]
LOADS_NETWORKS = {"train", "w_avg", "evaluate", "report"}

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None))))
"""


def imported_project_files(modules: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = set()
    for path in json.loads(out):
        try:
            relative = Path(path).resolve().relative_to(ROOT)
        except ValueError:
            continue
        if relative.parts[0] in PROJECT_PACKAGES:
            files.add(relative.as_posix())
    return files


def covered(path: str, deps: tuple[str, ...]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_deps_cover_the_modules_it_imports(stage):
    command, deps = STAGES[stage]["cmd"], tuple(STAGES[stage].get("deps", []))
    assert command.startswith("python -m "), command
    modules = [command.split()[2]] + (ON_DEMAND if stage in LOADS_NETWORKS else [])
    imported = imported_project_files(modules)
    # Package __init__ files of stages/ only register the package: they are not the stage's code.
    missing = sorted(
        f for f in imported if not covered(f, deps) and f != "stages/__init__.py"
    )
    assert not missing, f"dvc.yaml: stage {stage} imports {missing}, which its deps do not cover"
