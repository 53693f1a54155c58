"""For the crash tests: the project in a fresh git + DVC repo, `dvc repro` started in a process group of its
own and killed whole with SIGKILL, and inotify (Linux, through ctypes) to kill at the moment a file appears:
while a checkpoint or the final network is being written."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stylegan", "pipeline", "stages", "dvc.yaml", ".dvcignore", "pyproject.toml")


def tiny_params(**sections: dict) -> dict:
    """The embedded default shrunk to seconds per stage; `sections` update it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["demo"].update(count=400, resolution=32)
    params["align"].update(method="center_crop", output_size=32)
    params["prepare"].update(resolution=16, shard_size=50)
    params["model"].update(z_dim=16, w_dim=16, channel_base=128, channel_max=32)
    params["train"].update(kimg=0.256, batch=8, tick_kimg=0.064, snapshot_kimg=0.064, workers=0)
    params["train"]["sample_seeds"] = [0, 1, 2, 3]
    params["w_avg"].update(num_samples=256, batch=128)
    params["eval"].update(metrics=["fid50k_full", "kid50k_full"], num_gen=32, num_real=32, batch=16)
    params["report"].update(grid_seeds=[0, 1, 2, 3], truncation_sweep=[0.0, 1.0], interpolation_frames=2)
    params["report"].update(mixing_rows=[1, 2], mixing_cols=[3, 4], interpolation_seeds=[0, 1])
    for name, values in sections.items():
        params[name].update(values)
    return params


class Project:
    """The project's code in `path`, a committed git + DVC repo with its own MLflow store."""

    def __init__(self, path: Path, params: dict | None = None, detectors: Path | None = None) -> None:
        self.path = path
        if not path.exists():
            path.mkdir(parents=True)
            for name in PROJECT_FILES:
                source = ROOT / name
                if source.is_dir():
                    shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(source, path / name)
            (path / "params.yaml").write_text(yaml.safe_dump(params or tiny_params()))
            (path / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/repro.log\n")
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(path),
            "MLFLOW_TRACKING_URI": f"sqlite:///{path}/mlflow.db",
            "STYLEGAN_CACHE_DIR": str(detectors or path.parent / "detectors"),
            "OMP_NUM_THREADS": "1",  # the same kernels in every process: bit-identical results
        }
        self.env.pop("DVC_ROOT", None)
        if not (path / ".git").exists():
            for command in (
                ["git", "init", "-q"],
                ["git", "config", "user.email", "test@example.invalid"],
                ["git", "config", "user.name", "test"],
                [sys.executable, "-m", "dvc", "init", "-q"],
                ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"],
            ):
                self.run(*command)

    def copy(self, path: Path) -> Project:
        """Another working copy of this repo as it is now (DVC cache, checkpoints and MLflow store too)."""
        shutil.copytree(self.path, path, symlinks=True)
        return Project(path, detectors=Path(self.env["STYLEGAN_CACHE_DIR"]))

    def run(self, *command: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        if check:
            output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            assert result.returncode == 0, f"{' '.join(command)}:\n{output}"
        return result

    def repro(self, *targets: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", "repro", *targets)

    def start_repro(self, *targets: str) -> Repro:
        return Repro(self, targets)

    def lock(self) -> dict:
        return yaml.safe_load((self.path / "dvc.lock").read_text())["stages"]

    def checkpoint_dir(self) -> Path | None:
        """The train stage's checkpoint folder, once it exists."""
        root = self.path / ".cache/checkpoints"
        found = [p / "checkpoints" for p in root.glob("*/*/")]  # <run key>/<owner>
        return found[0] if found and found[0].is_dir() else None


class Repro:
    """`dvc repro` running in a process group of its own (so that a kill takes the stage with it)."""

    def __init__(self, project: Project, targets: tuple[str, ...]) -> None:
        self.project, self.log = project, project.path / "repro.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dvc", "repro", *targets], cwd=project.path, env=project.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_for(self, condition: Callable[[], bool], timeout: float = 300, poll: float = 0.005) -> None:
        """Until `condition()` holds; fails if `dvc repro` ends first."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.running(), f"dvc repro ended before the kill:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output()[-3000:]}"
            time.sleep(poll)

    def kill(self) -> None:
        """SIGKILL to the whole process group: dvc, the stage's shell and python, its pool workers."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        _wait_for_group_to_die(self.process.pid)

    def finish(self, timeout: float = 900) -> str:
        self.process.wait(timeout)
        assert self.process.returncode == 0, self.output()[-4000:]
        return self.output()


def _wait_for_group_to_die(pgid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {pgid} still alive after SIGKILL")


# --- inotify ---------------------------------------------------------------------------------------------

IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")


class Inotify:
    """Files created in one folder, as the kernel reports them (no polling: no window is missed)."""

    def __init__(self, folder: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, str(folder).encode(), IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def wait_for(self, prefix: str, timeout: float, alive: Callable[[], bool]) -> str | None:
        """The name of the first file created whose name starts with `prefix`, or None (timeout, or
        `alive()` turned false)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                raise
            offset = 0
            while offset < len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0").decode()
                offset += _EVENT.size + length
                if name.startswith(prefix):
                    return name
        return None

    def close(self) -> None:
        os.close(self.fd)
