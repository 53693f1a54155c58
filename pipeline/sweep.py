"""A sweep over a grid of params, as DVC experiments: `python -m pipeline.sweep --grid 'train.gamma=[1, 2]'`.

Each point of the grid (plus the fixed overrides of `--set`) is one `dvc exp run --temp -S ...` in its
own Prefect task (see :func:`pipeline.flow.run_experiment`), at most `max_parallel` at a time; the results
are collected with `dvc exp show --json` into a table artifact of params against metrics (`sweep-results`,
on the flow run's Artifacts tab) and printed as a table of the swept keys and the main metrics.
Stopping the sweep (SIGTERM, Ctrl-C) stops the experiments it started.

Why not DVC's own queue (`dvc exp run --queue` + `dvc queue start -j N`)? Its Celery workers run
detached from the command that starts them: their logs reach the flow only by polling
`dvc queue logs`, a crashed flow leaves them running, and `dvc exp run --run-all` runs every queued
entry (stale ones too) and exits 0 when experiments failed (DVC 3.67). Experiments run with `--temp`
each in their own copy of the repo and hold DVC's repo lock only to stash and to collect, so several
can run side by side, each with its own logs, retries and state in Prefect. `max_parallel` defaults to
1: on one GPU, experiments would only share it. With more, point MLFLOW_TRACKING_URI at a tracking
server rather than the default SQLite file, which serialises concurrent writers. To fan out across
machines, start several flow runs of the deployment on a work pool with several workers
(see `prefect.yaml`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from pipeline.dvc_graph import DvcGraphError, load_pipeline
from pipeline.flow import (
    DvcCommandError,
    PipelineSummary,
    dvc_command,
    parse_assignment,
    run_experiment,
    stop_running_commands,
    stopping_commands_on_signals,
    use_quiet_defaults,
)
from pipeline.params import MetricName

PARAMS_FILE = "params.yaml"
# The printed table's metrics: the evaluation metrics' numbers (all numbers when there are none of them).
MAIN_METRICS = get_args(MetricName)


class SweepError(RuntimeError):
    """Some experiments of a sweep failed; the results table (`rows`) still lists every point."""

    def __init__(self, message: str, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.rows = list(rows)


def expand_grid(
    grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest, each with the `fixed`
    overrides first. A grid key without a list of values, or set both ways, is an error."""
    fixed = dict(fixed or {})
    for key, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            scalar = isinstance(values, str) or not isinstance(values, Sequence)
            hint = f" (a fixed value is --set {key}={values})" if scalar else ""
            raise ValueError(f"grid {key}: expected a non-empty list of values, got {values!r}{hint}")
    if both := sorted(set(grid) & set(fixed)):
        raise ValueError(f"{', '.join(both)}: both swept (--grid) and fixed (--set); choose one")
    combinations = itertools.product(*grid.values())
    return [{**fixed, **dict(zip(grid, combination, strict=True))} for combination in combinations]


@flow(name="stylegan-sweep")
def sweep_flow(
    grid: dict[str, list[Any]],
    repo_dir: str = ".",
    targets: list[str] | None = None,
    name: str | None = None,
    max_parallel: int = 1,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run one DVC experiment per grid point, named `<name>-<n>` (default name: the flow run's), each with
    the fixed `overrides` as well.

    Returns the results table (one row per point: experiment, status, params, metrics). Raises
    :class:`SweepError` after publishing the table when any experiment failed.
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    repo = Path(repo_dir).resolve()
    if targets:
        load_pipeline(repo / "dvc.yaml").select(targets)  # fail on an unknown stage before queueing anything
    points = expand_grid(grid, overrides)
    prefix = name or flow_run.name
    names = [f"{prefix}-{number}" for number in range(1, len(points) + 1)]
    get_run_logger().info("sweep %s: %d experiments, %d at a time", prefix, len(points), max_parallel)

    futures: list[PrefectFuture[PipelineSummary]] = []
    running: deque[PrefectFuture[PipelineSummary]] = deque()
    try:
        for point, experiment in zip(points, names, strict=True):
            if len(running) == max_parallel:
                running.popleft().wait()
            future = run_experiment.submit(str(repo), point, experiment, targets or [])
            running.append(future)
            futures.append(future)
        for future in futures:
            future.wait()
    except BaseException:
        # Stopped (SIGTERM, Ctrl-C, a cancelled flow run): the experiments run in task threads, each
        # waiting on a `dvc exp run` in its own session; stop those, or they run on (and the flow run
        # waits for its threads).
        stop_running_commands()
        raise
    errors = {}
    for experiment, future in zip(names, futures, strict=True):
        if future.state.is_failed():
            errors[experiment] = future.result(raise_on_failure=False)

    rows = results_table(show_experiments(repo), points, names, errors)
    create_table_artifact(rows, key="sweep-results", description=f"Sweep {prefix}: params and metrics")
    if errors:
        raise SweepError(f"{len(errors)} of {len(points)} experiments failed: {', '.join(errors)}", rows)
    return rows


def show_experiments(repo: Path) -> dict[str, dict[str, Any]]:
    """`dvc exp show --json`, as experiment name -> its `data` (params and metrics by file)."""
    result = subprocess.run(
        dvc_command("exp", "show", "--json"), cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise DvcCommandError(
            dvc_command("exp", "show", "--json"), result.returncode, result.stderr.splitlines()
        )
    experiments = {}
    for baseline in json.loads(result.stdout):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("name") and rev.get("data"):
                    experiments[rev["name"]] = rev["data"]
    return experiments


def results_table(
    shown: Mapping[str, Mapping[str, Any]],
    points: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    errors: Mapping[str, BaseException],
) -> list[dict[str, Any]]:
    """One row per point. Params are read back from the experiment (what DVC ran, not what was asked),
    metrics are every number in its metrics files; a failed point keeps its requested params."""
    rows = []
    for point, experiment in zip(points, names, strict=True):
        data = shown.get(experiment)
        row: dict[str, Any] = {"experiment": experiment}
        if data is None:
            error = errors.get(experiment)
            reason = error.tail[-1] if isinstance(error, DvcCommandError) and error.tail else str(error)
            row.update(status="failed", **point, error=reason)
        else:
            params = _params_by_file(data)
            row.update(status="done", **{key: _lookup(params, key) for key in point}, **_metrics(data))
        rows.append(row)
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return [{column: row.get(column) for column in columns} for row in rows]


def _params_by_file(data: Mapping[str, Any]) -> dict[str, Any]:
    return {file: (entry or {}).get("data") or {} for file, entry in (data.get("params") or {}).items()}


def _lookup(params_by_file: Mapping[str, Any], key: str) -> Any:
    """The value of an override key (`train.gamma` or `other.yaml:train.gamma`) in `dvc exp show` params."""
    file, _, dotted = key.rpartition(":")
    node: Any = params_by_file.get(file or PARAMS_FILE, {})
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _metrics(data: Mapping[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for file, entry in (data.get("metrics") or {}).items():
        for key, value in _flat_numbers((entry or {}).get("data") or {}).items():
            metrics[f"{file}:{key}" if key in metrics else key] = value
    return metrics


def _flat_numbers(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flat_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def format_table(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    metrics: Sequence[str] | None = None,
    fixed: Sequence[str] = (),
) -> str:
    """The results as aligned text columns: experiment, status, the swept `keys`, then `metrics` (default:
    the numbers of :data:`MAIN_METRICS`, else every numeric column but the `fixed` params); failures end
    with their error."""
    if metrics is None:
        metrics = _main_metrics(rows, [*keys, *fixed])
    columns = ["experiment", "status", *keys, *metrics]
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()]
    for row, line in zip(rows, cells, strict=True):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        if row.get("error"):
            text += f"  error: {row['error']}"
        lines.append(text)
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _main_metrics(rows: Sequence[Mapping[str, Any]], params: Sequence[str]) -> list[str]:
    numeric = [
        column
        for column in dict.fromkeys(column for row in rows for column in row)
        if column not in {"experiment", "status", "error", *params}
        and all(row.get(column) is None or _is_number(row.get(column)) for row in rows)
        and any(_is_number(row.get(column)) for row in rows)
    ]
    return [column for column in numeric if column.startswith(MAIN_METRICS)] or numeric


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--grid",
        metavar="KEY=[V1, V2, ...]",
        type=parse_assignment,
        action="append",
        required=True,
        help="a param and the values to try (YAML list; repeatable: the sweep is every combination)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        type=parse_assignment,
        action="append",
        default=[],
        help="a param set to one value in every experiment of the sweep (repeatable)",
    )
    parser.add_argument(
        "--stages", nargs="+", metavar="STAGE", help="run only these stages and their upstream"
    )
    parser.add_argument(
        "--name", help="prefix of the experiment names (default: the Prefect flow run's name)"
    )
    parser.add_argument("-j", "--max-parallel", type=int, default=1, help="experiments at a time (default 1)")
    parser.add_argument("--repo-dir", default=".", help="the DVC repository (default: the current directory)")
    args = parser.parse_args(argv)
    grid, overrides = dict(args.grid), dict(args.overrides)
    try:
        expand_grid(grid, overrides)  # a scalar where a list belongs is an error before anything runs
    except ValueError as exc:
        parser.error(str(exc))
    use_quiet_defaults()
    try:
        with stopping_commands_on_signals():
            rows = sweep_flow(
                grid=grid,
                repo_dir=args.repo_dir,
                targets=args.stages,
                name=args.name,
                max_parallel=args.max_parallel,
                overrides=overrides,
            )
    except SweepError as exc:
        print(format_table(exc.rows, list(grid), fixed=list(overrides)))
        print(exc, file=sys.stderr)
        return 1
    except (DvcCommandError, DvcGraphError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(format_table(rows, list(grid), fixed=list(overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
