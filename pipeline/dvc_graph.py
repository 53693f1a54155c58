"""Read `dvc.yaml` into its stages, ordered as DVC would run them.

`dvc.yaml` is the one declaration of the DAG; the Prefect flows read it through this module instead of
keeping a copy. Stage B depends on stage A when one of B's deps is, lies inside or contains one of A's
outputs (`outs`, `metrics` or `plots`), which is how DVC itself links stages. The order is topological
and stable: among the stages whose upstream has run, the one declared first in `dvc.yaml` comes next.

Only plain stages are understood: `foreach`/`matrix` stages and `${...}` templating are rejected with an
error naming the stage, rather than read wrong.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

DVC_FILE = "dvc.yaml"
_OUTPUT_KEYS = ("outs", "metrics", "plots")


class DvcGraphError(ValueError):
    """A `dvc.yaml` this module cannot turn into a DAG; the message names the file and the stage."""


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]


@dataclass(frozen=True)
class Pipeline:
    """The stages of one `dvc.yaml` in run order, with each stage's direct upstream stages."""

    stages: tuple[Stage, ...]
    upstream: Mapping[str, frozenset[str]]

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def select(self, targets: Iterable[str]) -> Pipeline:
        """The targets and everything upstream of them, in the same order (like `dvc repro TARGET`)."""
        wanted: set[str] = set()
        todo = list(targets)
        unknown = [name for name in todo if name not in self.upstream]
        if unknown:
            raise DvcGraphError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(self.names)}")
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.upstream[name])
        return Pipeline(
            stages=tuple(stage for stage in self.stages if stage.name in wanted),
            upstream={name: deps for name, deps in self.upstream.items() if name in wanted},
        )


def load_pipeline(path: str | Path = DVC_FILE) -> Pipeline:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DvcGraphError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise DvcGraphError(f"{path} is not valid YAML: {exc}") from None
    return parse_pipeline(raw, str(path))


def parse_pipeline(raw: object, source: str = DVC_FILE) -> Pipeline:
    """Build the DAG from the parsed contents of a `dvc.yaml`."""
    stages_raw = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise DvcGraphError(f"{source}: expected a non-empty 'stages' mapping")
    stages = [_parse_stage(name, entry, source) for name, entry in stages_raw.items()]
    _check_outputs_disjoint(stages, source)
    upstream = {
        stage.name: frozenset(
            producer.name
            for producer in stages
            if any(_overlaps(dep, out) for dep in stage.deps for out in producer.outs)
        )
        for stage in stages
    }
    return Pipeline(stages=_stable_topological_order(stages, upstream, source), upstream=upstream)


def _parse_stage(name: str, entry: object, source: str) -> Stage:
    where = f"{source}: stage '{name}'"
    if not isinstance(entry, dict):
        raise DvcGraphError(f"{where}: expected a mapping, got {type(entry).__name__}")
    if "foreach" in entry or "matrix" in entry:
        raise DvcGraphError(
            f"{where}: foreach/matrix stages are not supported; declare the stages one by one"
        )
    if "cmd" not in entry:
        raise DvcGraphError(f"{where}: missing 'cmd'")
    wdir = entry.get("wdir", ".")
    deps = _paths(entry.get("deps"), wdir, f"{where}, deps")
    outs = tuple(path for key in _OUTPUT_KEYS for path in _paths(entry.get(key), wdir, f"{where}, {key}"))
    return Stage(name=name, deps=deps, outs=outs)


def _paths(entries: object, wdir: str, where: str) -> tuple[str, ...]:
    """Paths of a deps/outs list, relative to the repo root. Entries are strings or `{path: options}`."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise DvcGraphError(f"{where}: expected a list, got {type(entries).__name__}")
    paths = []
    for entry in entries:
        if isinstance(entry, dict) and len(entry) == 1:
            entry = next(iter(entry))
        if not isinstance(entry, str):
            raise DvcGraphError(f"{where}: expected a path or {{path: options}}, got {entry!r}")
        if "${" in entry:
            raise DvcGraphError(f"{where}: templated path {entry!r} is not supported")
        paths.append(posixpath.normpath(posixpath.join(wdir, entry)))
    return tuple(paths)


def _overlaps(a: str, b: str) -> bool:
    """Whether two repo-relative paths are the same or one lies inside the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _check_outputs_disjoint(stages: list[Stage], source: str) -> None:
    owners: list[tuple[str, str]] = []
    for stage in stages:
        for out in stage.outs:
            for owner, other in owners:
                if _overlaps(out, other):
                    raise DvcGraphError(
                        f"{source}: output '{out}' of stage '{stage.name}' overlaps output '{other}' of "
                        f"stage '{owner}'"
                    )
        owners.extend((stage.name, out) for out in stage.outs)


def _stable_topological_order(
    stages: list[Stage], upstream: Mapping[str, frozenset[str]], source: str
) -> tuple[Stage, ...]:
    waiting = {stage.name: set(upstream[stage.name]) for stage in stages}
    ordered: list[Stage] = []
    while waiting:
        ready = next((stage for stage in stages if stage.name in waiting and not waiting[stage.name]), None)
        if ready is None:
            raise DvcGraphError(
                f"{source}: dependency cycle {' -> '.join(_find_cycle(waiting))} (each needs the next)"
            )
        ordered.append(ready)
        del waiting[ready.name]
        for deps in waiting.values():
            deps.discard(ready.name)
    return tuple(ordered)


def _find_cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    """Follow upstream links among blocked stages until one repeats: every blocked stage waits on another."""
    path: list[str] = []
    node = min(waiting)
    while node not in path:
        path.append(node)
        node = min(waiting[node])
    return [*path[path.index(node) :], node]
