"""Worker pools fail loudly: when the data stages' workers cannot start (here: a script without an
``if __name__ == "__main__":`` guard, whose spawned workers re-run it and may not start processes of their
own), the run stops with an error that says why, instead of multiprocessing.Pool respawning them forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.workers import WorkerPoolError, process_map

ROOT = Path(__file__).resolve().parents[1]

# Each script makes a few demo images in one process, then starts a pool of 2 from unguarded code.
SCRIPTS = {
    "align": """
        from pipeline.align_folder import align_folder
        from pipeline.download.demo import generate_demo
        from pipeline.download.manifest import read_manifest
        generate_demo(RAW, count=6, resolution=32, workers=1)
        align_folder(RAW, read_manifest(RAW), OUT, method="center_crop", output_size=16, workers=2)
    """,
    "prepare": """
        from pipeline.download.demo import generate_demo
        from pipeline.download.manifest import read_manifest
        from pipeline.shards import prepare_shards
        generate_demo(RAW, count=6, resolution=32, workers=1)
        prepare_shards(RAW, read_manifest(RAW), OUT, resolution=16, workers=2)
    """,
    "demo data set": """
        from pipeline.download.demo import generate_demo
        generate_demo(RAW, count=64, resolution=16, workers=2)
    """,
}


@pytest.mark.parametrize("what", list(SCRIPTS))
def test_workers_that_cannot_start_stop_the_run_with_a_clear_error(tmp_path, what):
    script = tmp_path / "unguarded.py"
    prelude = f"RAW, OUT = {str(tmp_path / 'raw')!r}, {str(tmp_path / 'out')!r}\n"
    script.write_text(prelude + textwrap.dedent(SCRIPTS[what]))
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    error = _final_exception(result.stderr)
    assert error.startswith("pipeline.workers.WorkerPoolError: the 2 worker processes of the ")
    assert what in error and 'must guard its code with `if __name__ == "__main__":`' in error
    assert time.monotonic() - start < 120


def _final_exception(stderr: str) -> str:
    """The exception line of the last traceback in `stderr`: multiprocessing's resource tracker, a
    process of its own, may print warnings about the dead workers' semaphores after it."""
    lines = stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):"))
    return next(line for line in lines[start + 1 :] if line and not line.startswith(" "))


def _fail_on_three(item: int) -> int:
    if item == 3:
        raise ValueError("item 3 is bad")
    return item * item


def _square(item: int) -> int:
    return item * item


def test_results_keep_their_order_and_errors_of_the_work_propagate():
    assert list(process_map(_square, range(40), 2, chunksize=3)) == [i * i for i in range(40)]
    assert sorted(process_map(_square, range(40), 2, ordered=False)) == [i * i for i in range(40)]
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(process_map(_fail_on_three, range(10), 2))


def _broken_initializer() -> None:
    raise ImportError("no such model file")


def test_an_initializer_that_fails_breaks_the_pool_loudly():
    with pytest.raises(WorkerPoolError, match="the 2 worker processes of the test pool died or could not"):
        list(process_map(_square, range(10), 2, initializer=_broken_initializer, what="the test pool"))
