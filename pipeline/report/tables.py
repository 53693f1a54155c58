"""The report's tables as plain rows: metrics with their provenance, params, dataset, skipped inputs, timings.

Everything here is data in, rows out; :mod:`pipeline.report.render` puts the rows on the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MetricRow",
    "ProvenanceRow",
    "dataset_rows",
    "format_duration",
    "format_param",
    "format_value",
    "load_metrics",
    "metric_rows",
    "params_diff",
    "provenance_rows",
    "skipped_rows",
    "timing_rows",
]

# Headline numbers where lower is better; precision, recall and the Inception Score are higher-is-better.
_LOWER_IS_BETTER = ("fid", "kid", "ppl")
_HIGHER_IS_BETTER = ("_precision", "_recall")


def load_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """The evaluate stage's JSON: ``{name: record}``, or a list of records each with a ``name``."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None
    if isinstance(data, list) and all(isinstance(r, dict) and "name" in r for r in data):
        data = {record["name"]: record for record in data}
    if not isinstance(data, dict) or not all(isinstance(r, dict) for r in data.values()):
        raise ValueError(f"{path}: expected {{metric name: {{value, available, ...}}}}")
    return data


def format_value(value: Any) -> str:
    """A measured number with 4 significant digits; anything else as JSON writes it."""
    if isinstance(value, float) and not isinstance(value, bool):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return value if isinstance(value, str) else format_param(value)


def format_param(value: Any) -> str:
    """A param exactly, as JSON (the flow style of YAML) writes it: 0.05, 2.0, true, null, ["a"]."""
    return json.dumps(value, default=str)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- metrics ---------------------------------------------------------------------------------------


@dataclass
class MetricRow:
    """One number of the metrics table: this run's value and the same number of earlier runs."""

    metric: str
    key: str  # the official result key, e.g. pr50k3_full_recall; equals metric for one-number metrics
    values: list[float | None]  # this run first, then each previous run
    reason: str | None = None  # why this run has no value, in one line, with how to enable the metric
    best: int | None = None  # index into values of the best one, when at least two are known
    direction: str | None = None  # "lower" or "higher" is better
    detail: str | None = None  # the full reason (every URL tried, every error), when longer than ``reason``


def _direction(key: str) -> str | None:
    if key.startswith(_LOWER_IS_BETTER):
        return "lower"
    if key.endswith(_HIGHER_IS_BETTER) or key.startswith("is"):  # is50k_mean: the Inception Score
        return "higher"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _quantities(name: str, record: Mapping[str, Any]) -> dict[str, float | None]:
    results = record.get("results") or {}
    if len(results) > 1:
        return {key: _number(value) for key, value in results.items()}
    return {name: _number(record.get("value"))}


def _lookup(metrics: Mapping[str, Any], name: str, key: str) -> float | None:
    """``key`` of metric ``name`` in a previous run's metrics: full records or, as dvc exp show has them,
    flat numbers."""
    record = metrics.get(name)
    if isinstance(record, Mapping):
        results = record.get("results") or {}
        if key in results:
            return _number(results[key])
        if key == name:
            return _number(record.get("value"))
    elif key == name and record is not None:
        return _number(record)
    return _number(metrics.get(key))


_BRIEF_MAX = 240


def _brief(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """Why a metric is unavailable in one line (the record's ``brief``, else the first line of its reason,
    shortened), and the full reason when that says more."""
    reason = str(record.get("reason") or "not computed")
    brief = " ".join(str(record.get("brief") or reason.splitlines()[0]).split())
    if len(brief) > _BRIEF_MAX:
        brief = brief[: _BRIEF_MAX - 1].rstrip() + "…"
    return brief, (reason if reason != brief else None)


def metric_rows(
    metrics: Mapping[str, Mapping[str, Any]], previous: Sequence[Mapping[str, Any]] = ()
) -> list[MetricRow]:
    """One row per reported number of this run, with the same number from each previous run."""
    rows = []
    for name, record in metrics.items():
        available = record.get("available", record.get("value") is not None)
        for key, value in _quantities(name, record).items():
            values = [value if available else None]
            values += [_lookup(run.get("metrics") or {}, name, key) for run in previous]
            row = MetricRow(name, key, values)
            if not available:
                row.reason, row.detail = _brief(record)
            row.direction = _direction(key)
            known = [(v, i) for i, v in enumerate(values) if v is not None]
            if row.direction and len(known) > 1:
                pick = min if row.direction == "lower" else max
                row.best = pick(known)[1]
            rows.append(row)
    return rows


@dataclass
class ProvenanceRow:
    """What produced one metric: the feature extractor, sample counts, seed and the other settings."""

    metric: str
    extractor: str | None
    sha256: str | None
    num_real: Any
    num_gen: Any
    seed: Any
    other: dict[str, str] = field(default_factory=dict)


_PROVENANCE_SHOWN = {
    "name",
    "value",
    "available",
    "reason",
    "brief",
    "results",
    "extractor",
    "extractor_sha256",
    "detector",
    "num_real",
    "num_gen",
    "seed",
    "timing",
    "params",
    "note",  # said in words under the metrics table
}


def provenance_rows(metrics: Mapping[str, Mapping[str, Any]]) -> list[ProvenanceRow]:
    rows = []
    for name, record in metrics.items():
        detector = record.get("detector") or {}
        other = {
            key: format_value(value)
            for key, value in record.items()
            if key not in _PROVENANCE_SHOWN and value is not None
        }
        other.update({key: format_value(value) for key, value in (record.get("params") or {}).items()})
        seconds = (record.get("timing") or {}).get("metric_s")
        if isinstance(seconds, int | float):
            other["time"] = format_duration(seconds)
        rows.append(
            ProvenanceRow(
                metric=name,
                extractor=record.get("extractor") or detector.get("name"),
                sha256=record.get("extractor_sha256") or detector.get("sha256"),
                num_real=record.get("num_real"),
                num_gen=record.get("num_gen"),
                seed=record.get("seed"),
                other=other,
            )
        )
    return rows


# --- params, data, timings -------------------------------------------------------------------------


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def params_diff(default: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, default, current)`` for every leaf that differs; a missing side reads as None."""
    flat_default, flat_current = _flatten(default), _flatten(current)
    keys = sorted(flat_default.keys() | flat_current.keys())
    return [
        (key, flat_default.get(key), flat_current.get(key))
        for key in keys
        if flat_default.get(key) != flat_current.get(key)
    ]


def dataset_rows(stats: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Summary rows (label, text) and per-channel rows (channel, mean, std) of the shards' stats.json."""
    mean, std = stats.get("mean") or [], stats.get("std") or []
    names = ("R", "G", "B") if len(mean) == 3 else tuple(str(i) for i in range(len(mean)))
    channels = [(n, f"{m:.4f}", f"{s:.4f}") for n, m, s in zip(names, mean, std, strict=False)]
    summary = [("images", f"{stats['count']:,}")] if "count" in stats else []
    histogram = stats.get("label_histogram")
    if histogram:
        summary += [
            ("classes", str(len(histogram))),
            ("images per class", f"{min(histogram):,} to {max(histogram):,}"),
        ]
    elif "label_histogram" in stats:
        summary.append(("labels", "none"))
    known = {"count", "mean", "std", "label_histogram"}
    summary += [(key, format_value(value)) for key, value in stats.items() if key not in known]
    return summary, channels


def skipped_rows(summary: Mapping[str, int]) -> list[tuple[str, int]]:
    """Skip reasons, most frequent first."""
    return sorted(summary.items(), key=lambda item: (-item[1], item[0]))


def timing_rows(timings: Mapping[str, float]) -> list[tuple[str, str, float]]:
    """(stage, duration, share of the slowest stage in percent), in the order given."""
    slowest = max(timings.values(), default=0) or 1
    return [(stage, format_duration(s), 100 * s / slowest) for stage, s in timings.items()]
