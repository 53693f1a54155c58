"""The report stage's HTML page: sample figures, training curves, metrics, data, params and timings."""

from pipeline.report.hardware import describe_hardware
from pipeline.report.render import render_report
from pipeline.report.tables import load_metrics, params_diff

__all__ = ["describe_hardware", "load_metrics", "params_diff", "render_report"]
