"""The evaluate stage's two files (issue 16): `metrics/eval.json`, one number per metric key for
`dvc metrics`/`dvc exp show`, and `metrics/eval_provenance.json`, what produced each number without this
machine's paths; and the report page made self-contained for MLflow's preview."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipeline.evaluation import metric_values, portable
from pipeline.html_inline import inline_media

HOME = str(Path.home())

RECORDS = {
    "fid50k_full": {
        "name": "fid50k_full", "available": True, "value": 12.5, "results": {"fid50k_full": 12.5},
        "reason": None, "num_gen": 300, "timing": {"metric_s": 0.5},
        "detector": {"name": "inception", "sha256": "7ff4", "path": f"{HOME}/.cache/detectors/inception.pt"},
    },  # fmt: skip
    "pr50k3_full": {
        "name": "pr50k3_full", "available": True, "value": 0.5, "reason": None,
        "results": {"pr50k3_full_precision": 0.5, "pr50k3_full_recall": 0.25},
    },  # fmt: skip
    "ppl2_wend": {
        "name": "ppl2_wend", "available": False, "value": None, "results": {}, "detector": None,
        "reason": f"vgg16: download failed; place it at {HOME}/.cache/stylegan-pipeline/detectors/vgg16.pt",
    },  # fmt: skip
    "kid50k_full": {"name": "kid50k_full", "available": True, "value": math.nan,
                    "results": {"kid50k_full": math.nan}},  # fmt: skip
}


def test_the_metrics_file_is_one_finite_number_per_result_key():
    assert metric_values(RECORDS) == {
        "fid50k_full": 12.5,
        "pr50k3_full_precision": 0.5,
        "pr50k3_full_recall": 0.25,
    }


@pytest.mark.skipif(HOME in ("", "/"), reason="needs a home folder")
def test_provenance_keeps_detector_hashes_and_drops_machine_paths(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = dict(RECORDS["fid50k_full"], note=f"features cached in {tmp_path}/.cache/features/x.npz")
    kept = portable(record)
    assert kept["detector"] == {"name": "inception", "sha256": "7ff4"}
    assert kept["note"] == "features cached in .cache/features/x.npz"
    assert kept["timing"] == {"metric_s": 0.5} and kept["num_gen"] == 300
    reason = portable(RECORDS["ppl2_wend"])["reason"]
    assert reason.endswith("place it at ~/.cache/stylegan-pipeline/detectors/vgg16.pt") and HOME not in reason
    assert RECORDS["fid50k_full"]["detector"]["path"].startswith(HOME)  # the input is left as it was


def test_the_page_inlines_its_own_images_only(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images/a b.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (tmp_path / "loop.webp").write_bytes(b"RIFFxxxxWEBP")
    (tmp_path.parent / "secret.png").write_bytes(b"outside")
    page = tmp_path / "index.html"
    page.write_text(
        '<img src="images/a%20b.png"><IMG alt=x SRC=\'loop.webp\'><img src="../secret.png">'
        '<img src="missing.png"><img src="https://example.com/x.png"><img src="data:image/png;base64,AA==">'
    )
    html = inline_media(page)
    assert '<img src="data:image/png;base64,iVBORw0KGgpmYWtl">' in html
    assert "SRC='data:image/webp;base64,UklGRnh4eHhXRUJQ'" in html
    for untouched in ('src="../secret.png"', 'src="missing.png"', 'src="https://example.com/x.png"',
                      'src="data:image/png;base64,AA=="'):  # fmt: skip
        assert untouched in html
