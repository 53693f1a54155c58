"""pipeline.download.download: the dispatcher behind the download stage takes each data.<source> section
of the params schema as it is, and refuses what it cannot honour."""

from __future__ import annotations

import inspect

import pytest

import pipeline.download as download_package
from pipeline.download import SOURCES, download, read_manifest
from pipeline.params import DataParams, DemoData


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_schema_key_is_a_parameter_of_its_source(source):
    section = getattr(DataParams(), source)
    function = getattr(download_package, SOURCES[source])
    assert set(type(section).model_fields) <= set(inspect.signature(function).parameters)


def test_schema_section_runs_the_source(tmp_path):
    summary = download("demo", DemoData(count=16, resolution=16, seed=3, labels=False), tmp_path)
    total = sum(row["size"] for row in read_manifest(tmp_path))
    assert summary == {"source": "demo", "images": 16, "bytes": total, "classes": None}


def test_unknown_source_and_keys_are_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"data.source must be one of \['demo', 'ffhq', 'flowers102', 'folder'\]"
    ):
        download("celeba", None, tmp_path)
    with pytest.raises(ValueError, match=r"data.demo has unknown keys \['size'\]"):
        download("demo", {"size": 64}, tmp_path)
