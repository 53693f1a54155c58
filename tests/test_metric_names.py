"""Metric names never overstate: a metric computed on fewer (or more) generated images than its name states
reports under a name stating the number it used, and the report says so in words. (compute_metrics itself
is checked in test_metrics_detectors.py, the evaluate stage's files in test_dag.py.)"""

from __future__ import annotations

import json
import re

import pytest

from pipeline.params import ReportParams
from pipeline.report import render_report
from stylegan.metrics.metric_main import count_note, result_name


@pytest.mark.parametrize(
    "name, num_gen, reported",
    [
        ("fid50k_full", 50_000, "fid50k_full"),  # as defined: the official name
        ("fid50k_full", 300, "fid300_full"),
        ("fid50k_full", 10_000, "fid10k_full"),
        ("fid5k_full", 20_000, "fid20k_full"),
        ("kid50k_full", 300, "kid300_full"),
        ("is50k", 1500, "is1500"),
        ("pr50k3_full", 300, "pr300_3_full"),  # the 3 is the neighbourhood size, kept apart from the count
        ("pr50k3_full", 2000, "pr2k3_full"),
        ("ppl2_wend", 200, "ppl2_wend"),  # names that state no count keep it (the note says it)
        ("pr_inception", 300, "pr_inception"),
    ],
)
def test_the_reported_name_states_the_number_of_images(name, num_gen, reported):
    assert result_name(name, num_gen) == reported


def test_the_note_says_it_in_words():
    assert count_note("fid50k_full", 50_000) is None
    note = count_note("fid50k_full", 300)
    assert note.startswith("fid300_full is fid50k_full computed on 300 generated images instead of the 50,")
    assert "not comparable with published fid50k_full values" in note and "biased upwards" in note
    assert count_note("ppl2_wend", 200).startswith("ppl2_wend computed on 200 sampled latent paths instead")


def test_the_report_shows_the_honest_key_and_the_note(tmp_path):
    note = count_note("fid50k_full", 300)
    records = {
        "fid300_full": {
            "name": "fid300_full", "metric": "fid50k_full", "available": True, "value": 81.5,
            "results": {"fid300_full": 81.5}, "num_gen": 300, "num_real": 300, "seed": 0, "note": note,
        }
    }  # fmt: skip
    (tmp_path / "eval_provenance.json").write_text(json.dumps(records))
    index = render_report(
        tmp_path / "reports", report_params=ReportParams(), metrics_path=tmp_path / "eval_provenance.json"
    )
    text = " ".join(re.sub(r"<[^>]+>", " ", index.read_text()).split())
    assert "fid300_full" in text and note in text
    assert "fid50k_full 81.5" not in text
