"""pipeline.download.demo: the procedurally generated flowers are the same bytes for the same seed on
any number of workers, have the asked count and size, and their labels say what the pixels show (checked
with PIL's own RGB->HSV conversion)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import PIL.Image
import pytest

from pipeline.download import download, generate_demo, read_manifest
from pipeline.download.demo import COLOUR_FAMILIES

COUNT = 420


def _hashes(out_dir) -> list[tuple[str, str]]:
    return [(row["file"], row["sha256"]) for row in read_manifest(out_dir)]


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo(out, count=COUNT, resolution=32, seed=11, workers=1)
    return out, summary


def test_same_seed_same_bytes_for_any_worker_count(flowers, tmp_path):
    out, _ = flowers
    generate_demo(tmp_path / "again", count=COUNT, resolution=32, seed=11, workers=2)
    assert _hashes(tmp_path / "again") == _hashes(out)
    for file, sha in _hashes(out):
        assert hashlib.sha256((tmp_path / "again" / file).read_bytes()).hexdigest() == sha
    assert (tmp_path / "again/manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()
    assert (tmp_path / "again/labels.json").read_bytes() == (out / "labels.json").read_bytes()


def test_image_depends_on_seed_and_index_only(flowers, tmp_path):
    out, _ = flowers
    generate_demo(tmp_path / "short", count=20, resolution=32, seed=11)
    assert [sha for _, sha in _hashes(tmp_path / "short")] == [sha for _, sha in _hashes(out)[:20]]
    generate_demo(tmp_path / "other", count=20, resolution=32, seed=12)
    assert not {sha for _, sha in _hashes(tmp_path / "other")} & {sha for _, sha in _hashes(out)}


def test_count_size_format_and_manifest(flowers):
    out, summary = flowers
    rows = read_manifest(out)
    assert len(rows) == COUNT == summary["images"]
    assert (
        rows[0]["file"] == "images/00000/00000.png"
        and rows[-1]["file"] == f"images/00000/{COUNT - 1:05d}.png"
    )
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()) == [
        row["file"] for row in rows
    ]
    for row in rows[:50]:
        data = (out / row["file"]).read_bytes()
        assert row["size"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()
        with PIL.Image.open(out / row["file"]) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))
            assert not image.info  # no metadata chunks that could vary
    assert summary["bytes"] == sum(row["size"] for row in rows)
    assert {row["source_url"] for row in rows} == {None}


def test_labels_are_balanced_colour_families(flowers):
    out, summary = flowers
    rows = read_manifest(out)
    counts = Counter(row["label"] for row in rows)
    assert sorted(counts) == list(range(len(COLOUR_FAMILIES))) and summary["classes"] == len(COLOUR_FAMILIES)
    expected = COUNT / len(COLOUR_FAMILIES)  # binomial counts: allow 4 standard deviations either side
    assert all(abs(n - expected) < 4 * np.sqrt(expected) for n in counts.values()), counts
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {
        str(i): {"name": family.name, "count": counts[i]} for i, family in enumerate(COLOUR_FAMILIES)
    }
    assert all(row["colour"] == COLOUR_FAMILIES[row["label"]].name for row in rows)


def _dominant_hue(image: PIL.Image.Image) -> float | None:
    """The most common hue (degrees) among vivid pixels, from PIL's RGB->HSV; None if there are few."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.float64)
    vivid = (hsv[..., 1] > 0.4 * 255) & (hsv[..., 2] > 0.5 * 255)
    if vivid.sum() < 0.05 * vivid.size:
        return None
    histogram, edges = np.histogram(hsv[..., 0][vivid] * 360 / 256, bins=72, range=(0, 360))
    return float(edges[np.argmax(histogram)] + 2.5)


def _hue_distance(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_labels_match_the_petal_colours(flowers):
    out, _ = flowers
    agree = total = 0
    for row in read_manifest(out)[:300]:
        family = COLOUR_FAMILIES[row["label"]]
        with PIL.Image.open(out / row["file"]) as image:
            if family.name == "white":
                hsv = np.asarray(image.convert("HSV"), dtype=np.float64)
                agree += ((hsv[..., 1] < 0.15 * 255) & (hsv[..., 2] > 0.85 * 255)).mean() > 0.05
            else:
                hue = _dominant_hue(image)
                low, high = family.hue
                agree += hue is not None and _hue_distance(hue, (low + high) / 2) <= (high - low) / 2 + 12
        total += 1
    assert agree / total >= 0.95, f"{agree} of {total} images show their label's colour"


def test_without_labels_and_rerun_replaces_images(tmp_path):
    out = tmp_path / "raw"
    generate_demo(out, count=30, resolution=16)
    summary = download("demo", {"count": 20, "resolution": 16, "seed": 0, "labels": False}, out)
    assert summary["classes"] is None and summary["images"] == 20
    assert {row["label"] for row in read_manifest(out)} == {None}
    assert not (out / "labels.json").exists()
    assert len(list((out / "images").rglob("*.png"))) == 20


def test_bad_params_are_named(tmp_path):
    with pytest.raises(ValueError, match="data.demo.count"):
        generate_demo(tmp_path, count=0)
    with pytest.raises(ValueError, match="data.demo.resolution"):
        generate_demo(tmp_path, resolution=4)
    with pytest.raises(ValueError, match="data.demo.seed"):
        generate_demo(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="data.source must be one of"):
        download("imagenet", {}, tmp_path)
