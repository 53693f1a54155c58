"""The Prefect flow that runs the DVC pipeline: `python -m pipeline.flow [--set key=value ...]`.

The flow reads `dvc.yaml` (through :mod:`pipeline.dvc_graph`) and runs each stage as a Prefect task, in
DAG order, with `dvc repro --single-item <stage>`. DVC stays the one cache: a stage whose deps and params
did not change does no work, and the flow reports it "up to date". Prefect adds what DVC lacks: retries
for stages that fail for outside reasons (the download), logs and state in one UI, schedules and work
pools (see `prefect.yaml`).

With params overrides (`{"train.gamma": 2}`) the whole pipeline runs as one DVC experiment,
`dvc exp run --temp -S train.gamma=2 --name <name>`, named after the Prefect flow run unless a name is
given. `--temp` runs it in a temporary copy of the repo, so the checkout a worker runs in keeps its
committed `params.yaml` and outputs: the next scheduled run, or a person working in the same checkout,
never finds params silently changed. The results are saved as the experiment (`dvc exp show`,
`dvc exp apply <name>`), and the outputs land in the shared DVC cache. The price: the copy holds only
files that git or DVC track, so new stage code must be committed (or at least `git add`-ed) first.

At the end the flow links the MLflow run (`models/mlflow_run.json`) and the report
(`reports/index.html`) as Prefect artifacts, next to a table of the stages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import IO, Any

import yaml
from dvc.api import DVCFileSystem
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from pipeline.dvc_graph import DvcGraphError, load_pipeline
from pipeline.tracking import RUN_INFO_FILE, RunInfo

REPORT_FILE = "reports/index.html"
# Stages that can fail for reasons outside the repo (network, remote servers) and are worth retrying.
DEFAULT_RETRIES = {"download": 3}
DEFAULT_RETRY_DELAY_SECONDS = 60.0
# Progress bars redraw with '\r' many times a second; the log gets one redraw per interval.
PROGRESS_LOG_INTERVAL_SECONDS = 10.0
_ERROR_TAIL_LINES = 40
# Usage telemetry, off unless the environment says otherwise: offline it fails in tracebacks ("Failed to
# send telemetry"), and Prefect's temporary server races its own SQLite database for it ("database is
# locked"). Applied to the flow's process (so to the temporary server it starts) and to every command.
QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


class StageOutcome(str, Enum):
    RAN = "ran"
    UP_TO_DATE = "up to date"
    RESTORED = "restored from run cache"


_OUTCOME_PATTERNS = (
    (re.compile(r"^Running stage '(?P<stage>[^']+)':"), StageOutcome.RAN),
    (re.compile(r"^Stage '(?P<stage>[^']+)' didn't change, skipping"), StageOutcome.UP_TO_DATE),
    (re.compile(r"^Stage '(?P<stage>[^']+)' is cached - skipping run"), StageOutcome.RESTORED),
)


@dataclass(frozen=True)
class StageRun:
    stage: str
    outcome: StageOutcome
    seconds: float


@dataclass(frozen=True)
class PipelineSummary:
    """What a pipeline run did: per stage, whether it ran and how long it took."""

    stages: list[StageRun]
    experiment: str | None = None

    def table(self) -> list[dict[str, Any]]:
        return [
            {"stage": s.stage, "outcome": s.outcome.value, "seconds": round(s.seconds, 1)}
            for s in self.stages
        ]

    def __str__(self) -> str:
        header = f"DVC experiment '{self.experiment}'" if self.experiment else "workspace"
        rows = [f"  {s.stage:<12} {s.outcome.value:<24} {s.seconds:8.1f} s" for s in self.stages]
        return "\n".join([header, *rows])


class DvcCommandError(RuntimeError):
    """A DVC command that exited non-zero; the message ends with the last lines of its output."""

    def __init__(
        self, command: Sequence[str], returncode: int, tail: Sequence[str], stage: str | None = None
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.tail = list(tail)
        self.stage = stage  # the stage that was running when the command failed, when known
        shown = " ".join(self.command[self.command.index("dvc") :] if "dvc" in self.command else self.command)
        super().__init__(f"`{shown}` exited with {returncode}; last output:\n" + "\n".join(self.tail))

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with its fields (Prefect may persist a failed state)
        return type(self), (self.command, self.returncode, self.tail, self.stage)


# --- running DVC ---------------------------------------------------------------------------------


def dvc_command(*args: str) -> list[str]:
    """DVC from this interpreter's environment, whatever PATH holds."""
    return [sys.executable, "-m", "dvc", *args]


def use_quiet_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set :data:`QUIET_DEFAULTS` in `environ` where it has no value of its own."""
    for key, value in QUIET_DEFAULTS.items():
        environ.setdefault(key, value)


def _child_env() -> dict[str, str]:
    # Stage commands say `python`: make it this environment's, and make its output arrive as printed.
    bin_dir = str(Path(sys.executable).parent)
    return {
        **QUIET_DEFAULTS,
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }


def iter_output_lines(
    stream: IO[bytes], progress_interval: float = PROGRESS_LOG_INTERVAL_SECONDS
) -> Iterator[str]:
    """The lines of a child's output as they arrive. A `\\r` redraw (a progress bar) is passed on at most
    once per `progress_interval` seconds; the bar's final state, ended by a newline, always is."""
    separator = re.compile(rb"\r\n|\n|\r")
    buffer = b""
    last_redraw = -float("inf")
    while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
        buffer += chunk
        start = 0
        for match in separator.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # maybe the first half of '\r\n': wait for the next chunk
            text = buffer[start : match.start()].decode(errors="replace")
            start = match.end()
            if match.group() != b"\r":
                yield text
            elif text and time.monotonic() - last_redraw >= progress_interval:
                last_redraw = time.monotonic()
                yield text
        buffer = buffer[start:]
    if buffer.strip(b"\r"):
        yield buffer.strip(b"\r").decode(errors="replace")


# The DVC commands this process started and that may still run: each leads its own process group (the
# stage commands DVC starts are in it), so that stopping the flow can stop them all.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def stop_running_commands(signum: int = signal.SIGTERM) -> int:
    """Send `signum` to the process group of every DVC command still running; returns how many."""
    with _running_lock:
        processes = [process for process in _running if process.poll() is None]
    for process in processes:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
    return len(processes)


@contextmanager
def stopping_commands_on_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGINT first stop the DVC commands started
    (`dvc exp run` and its stage commands, in their own sessions, do not get a signal sent to this
    process), then act as before: SIGINT raises KeyboardInterrupt, SIGTERM exits with 128 + 15."""
    previous = {signum: signal.getsignal(signum) for signum in signums}

    def handle(signum: int, frame: Any) -> None:
        stop_running_commands(signal.SIGTERM)
        before = previous[signum]
        if callable(before):
            before(signum, frame)
        elif before != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    for signum in signums:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_dvc(args: Sequence[str], repo: Path, logger: Logger | LoggerAdapter) -> list[tuple[float, str]]:
    """Run a DVC command in `repo`, forwarding its output line by line to `logger`.

    Returns the lines with their arrival times (monotonic). Raises :class:`DvcCommandError` on failure.
    """
    command = dvc_command(*args)
    logger.info("$ %s", " ".join(["dvc", *args]))
    lines: list[tuple[float, str]] = []
    tail: deque[str] = deque(maxlen=_ERROR_TAIL_LINES)
    # Its own session, so that stopping the task stops the stage command DVC started as well.
    process = subprocess.Popen(
        command,
        cwd=repo,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with _running_lock:
        _running.add(process)
    try:
        for line in iter_output_lines(process.stdout):
            lines.append((time.monotonic(), line))
            if line.strip():
                tail.append(line)
                logger.info(line)
        returncode = process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        with _running_lock:
            _running.discard(process)
    if returncode != 0:
        ran = [run.stage for run in stage_runs(lines, time.monotonic()) if run.outcome is StageOutcome.RAN]
        raise DvcCommandError(command, returncode, tail, stage=ran[-1] if ran else None)
    return lines


def stage_runs(lines: Iterable[tuple[float, str]], end: float) -> list[StageRun]:
    """Read DVC's "Running stage ..." / "... didn't change, skipping" lines into per-stage outcomes.

    A stage's time runs from its first line to the next stage's (or `end`)."""
    events: list[tuple[float, str, StageOutcome]] = []
    for arrived, line in lines:
        for pattern, outcome in _OUTCOME_PATTERNS:
            if match := pattern.match(line):
                events.append((arrived, match["stage"], outcome))
                break
    ends = [arrived for arrived, _, _ in events[1:]] + [end]
    return [
        StageRun(stage, outcome, until - arrived)
        for (arrived, stage, outcome), until in zip(events, ends, strict=True)
    ]


def format_override(key: str, value: Any) -> str:
    """One `dvc exp run -S` argument, written so that DVC (which reads it with Hydra's override grammar)
    gets back the same value and type: strings are always quoted, so `"2"` stays a string."""
    return f"{key}={_override_value(key, value)}"


def set_param_argument(key: str, value: Any) -> str:
    """A `--set-param` that sets `key` whether or not the params file has it (Hydra's `++key=value`): files
    leave most keys to the schema's defaults (`train.sample_seeds`, `report.grid_seeds`). A key the schema
    does not know is refused by the `check` stage, naming it. `other.yaml:key` sets a key of another file."""
    path, colon, name = key.rpartition(":")
    return f"{path}{colon}++{format_override(name, value)}"


def _override_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A Hydra quoted string: only quotes, and backslashes before a quote or at the end, are escaped.
        escaped = re.sub(r'(\\*)("|$)', lambda m: m[1] * 2 + ("\\" + m[2] if m[2] else ""), value)
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_value(key, item) for item in value) + "]"
    raise TypeError(f"override {key}: cannot pass a {type(value).__name__} ({value!r}) to `dvc exp run -S`")


# --- tasks ---------------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE, task_run_name="{stage}")
def reproduce_stage(repo_dir: str, stage: str) -> StageRun:
    """`dvc repro --single-item <stage>`: the stage alone; its upstream ran before it.

    `--wait-for-lock`: DVC releases its repo lock while the stage command runs and takes it again to record
    the results; someone's `dvc status` holding it at that moment must not fail the stage. Another `dvc
    repro` of the same stages still stops at once (DVC locks a running stage's deps and outputs apart)."""
    started = time.monotonic()
    lines = run_dvc(["--wait-for-lock", "repro", "--single-item", stage], Path(repo_dir), get_run_logger())
    outcomes = [run.outcome for run in stage_runs(lines, time.monotonic()) if run.stage == stage]
    return StageRun(stage, outcomes[0] if outcomes else StageOutcome.RAN, time.monotonic() - started)


@task(cache_policy=NO_CACHE, task_run_name="experiment {name}")
def run_experiment(
    repo_dir: str, overrides: Mapping[str, Any], name: str, targets: Sequence[str] = ()
) -> PipelineSummary:
    """`dvc exp run --temp --name <name> -S key=value ... [targets]`: the pipeline as one DVC experiment.

    `--wait-for-lock`: concurrent experiments each take DVC's repo lock briefly, to stash and to collect.
    """
    args = ["--wait-for-lock", "exp", "run", "--temp", "--name", name, *targets]
    for key, value in overrides.items():
        args += ["--set-param", set_param_argument(key, value)]
    lines = run_dvc(args, Path(repo_dir), get_run_logger())
    return PipelineSummary(stages=stage_runs(lines, time.monotonic()), experiment=name)


# --- the flow ------------------------------------------------------------------------------------


@flow(name="stylegan-pipeline")
def pipeline_flow(
    repo_dir: str = ".",
    overrides: dict[str, Any] | None = None,
    targets: list[str] | None = None,
    exp_name: str | None = None,
    retries: dict[str, int] | None = None,
    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS,
) -> PipelineSummary:
    """Run the DVC pipeline of `repo_dir` (only `targets` and their upstream, when given).

    Without `overrides` or `exp_name` the stages run in the workspace, one task each; with them, as one
    DVC experiment. `retries` maps stage names to retry counts (default: the download, 3 times); an
    experiment is retried only when it failed in one of those stages.
    """
    repo = Path(repo_dir).resolve()
    pipeline = load_pipeline(repo / "dvc.yaml")
    if targets:
        pipeline = pipeline.select(targets)
    retries = DEFAULT_RETRIES if retries is None else retries

    if overrides or exp_name:
        name = exp_name or flow_run.name
        # One task runs every stage: it is retried only when the stage that failed is one with retries.
        attempts = max(retries.get(stage, 0) for stage in pipeline.names)
        retried = frozenset(stage for stage in pipeline.names if retries.get(stage, 0) > 0)
        experiment = run_experiment.with_options(
            retries=attempts,
            retry_delay_seconds=retry_delay_seconds,
            retry_condition_fn=_failed_in_one_of(retried),
        )
        summary = experiment(str(repo), overrides or {}, name, targets or [])
    else:
        runs = []
        for stage in pipeline.names:
            reproduce = reproduce_stage.with_options(
                retries=retries.get(stage, 0), retry_delay_seconds=retry_delay_seconds
            )
            runs.append(reproduce(str(repo), stage))
        summary = PipelineSummary(stages=runs)

    publish_artifacts(repo, summary)  # the stage table is an artifact; the command line prints it
    return summary


def _failed_in_one_of(stages: frozenset[str]):
    """A Prefect `retry_condition_fn`: retry when the DVC command failed while running one of `stages`."""

    def failed_in_retried_stage(task: Any, task_run: Any, state: Any) -> bool:
        error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
        return isinstance(error, DvcCommandError) and error.stage in stages

    return failed_in_retried_stage


def publish_artifacts(repo: Path, summary: PipelineSummary) -> None:
    """The stage table, the MLflow run and the report, as artifacts of the current flow run."""
    where = f"DVC experiment {summary.experiment}" if summary.experiment else "workspace run"
    create_table_artifact(summary.table(), key="pipeline-stages", description=f"Stages of the {where}")
    run_info, report = _recorded_outputs(repo, summary.experiment)
    if run_info is not None:
        if url := run_info.ui_url():
            create_link_artifact(url, link_text=f"MLflow run {run_info.run_id}", key="mlflow-run")
        else:
            create_markdown_artifact(
                f"MLflow run `{run_info.run_id}` (experiment {run_info.experiment_id}) in "
                f"`{run_info.tracking_uri}`. To browse it:\n\n"
                f"    mlflow ui --backend-store-uri {run_info.tracking_uri} --host 127.0.0.1\n\n"
                f"then open http://127.0.0.1:5000/#/experiments/{run_info.experiment_id}/runs/{run_info.run_id}",
                key="mlflow-run",
            )
    if report and summary.experiment is None:
        create_link_artifact(
            (repo / REPORT_FILE).as_uri(), link_text="Pipeline report", key="pipeline-report"
        )
    elif report:
        create_markdown_artifact(
            f"The report of experiment `{summary.experiment}` is in the DVC cache: `dvc exp apply "
            f"{summary.experiment}` puts it in the workspace as `{REPORT_FILE}`.",
            key="pipeline-report",
        )


def _recorded_outputs(repo: Path, experiment: str | None) -> tuple[RunInfo | None, bool]:
    """The MLflow run file and whether a report exists, in the workspace or in the experiment's outputs."""
    if experiment is None:
        run_file = repo / RUN_INFO_FILE
        return (RunInfo.load(run_file) if run_file.exists() else None), (repo / REPORT_FILE).exists()
    fs = DVCFileSystem(str(repo), rev=experiment)
    run_info = None
    if fs.exists(RUN_INFO_FILE):
        run_info = RunInfo.from_json(
            fs.read_text(RUN_INFO_FILE), f"{RUN_INFO_FILE} of experiment {experiment}"
        )
    return run_info, fs.exists(REPORT_FILE)


# --- command line --------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (`2` is a number, `[1, 2]` a list, `ada` a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{key}: cannot read value {value!r}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.flow", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        type=parse_assignment,
        action="append",
        default=[],
        help="override a param (repeatable); the run becomes a DVC experiment",
    )
    parser.add_argument(
        "--stages", nargs="+", metavar="STAGE", help="run only these stages and their upstream"
    )
    parser.add_argument("--name", help="name of the DVC experiment (default: the Prefect flow run's name)")
    parser.add_argument("--repo-dir", default=".", help="the DVC repository (default: the current directory)")
    args = parser.parse_args(argv)
    use_quiet_defaults()
    try:
        with stopping_commands_on_signals():
            summary = pipeline_flow(
                repo_dir=args.repo_dir,
                overrides=dict(args.overrides),
                targets=args.stages,
                exp_name=args.name,
            )
    except (DvcCommandError, DvcGraphError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
