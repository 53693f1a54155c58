"""pipeline.shards: prepare writes reproducible WebDataset shards whose pixels, index and statistics
match what numpy, hashlib and tarfile compute independently."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from pipeline.shards import prepare_shards
from tests.bad_inputs import loadable, make_bad_input_corpus

RESOLUTION = 16


def _write_images(directory: Path, count: int, seed: int = 0, size: tuple[int, int] = (16, 16)) -> list[dict]:
    """`count` random RGB PNGs of `size` (width, height) with labels 0..2, and their manifest rows."""
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        file = f"images/{i:03d}.png"
        PIL.Image.fromarray(pixels).save(directory / file)
        rows.append({"file": file, "label": int(i % 3), "source": f"raw/{i}.jpg"})
    return rows


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _read_tar(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def _samples(out_dir: Path) -> list[dict[str, bytes]]:
    """Every sample of every shard listed in the index, read with tarfile, in order."""
    index = json.loads((out_dir / "index.json").read_text())
    samples: dict[str, dict[str, bytes]] = {}
    for shard in index["shards"]:
        with tarfile.open(out_dir / shard["name"]) as tar:
            for member in tar.getmembers():
                key, extension = member.name.split(".", 1)
                samples.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return [samples[key] for key in sorted(samples)]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    rows = _write_images(root / "aligned", 23)
    summary = prepare_shards(
        root / "aligned", rows, root / "shards", resolution=RESOLUTION, shard_size=5, workers=1
    )
    return root, rows, summary


def test_round_trip_keys_labels_and_metadata(prepared):
    root, rows, summary = prepared
    samples = _samples(root / "shards")
    assert summary.count == len(samples) == 23 and summary.skipped == 0
    for row, sample in zip(rows, samples, strict=True):
        original = np.asarray(PIL.Image.open(root / "aligned" / row["file"]))
        np.testing.assert_array_equal(_pixels(sample["png"]), original)
        assert PIL.Image.open(io.BytesIO(sample["png"])).mode == "RGB"
        assert int(sample["cls"].decode()) == row["label"]
        assert json.loads(sample["json"]) == {"file": row["file"], "source": row["source"]}
    first = _read_tar(root / "shards" / "shard-000000.tar")
    assert [m.name for m in first[:3]] == ["00000000.png", "00000000.cls", "00000000.json"]


def test_index_matches_files(prepared):
    root, _, summary = prepared
    index = json.loads((root / "shards" / "index.json").read_text())
    assert index["format"] == "webdataset"
    assert (index["resolution"], index["channels"], index["count"]) == (RESOLUTION, 3, 23)
    assert index["labels"] == {"has_labels": True, "num_classes": 3, "counts": [8, 8, 7]}
    assert [s["count"] for s in index["shards"]] == [5, 5, 5, 5, 3]
    assert sorted(p.name for p in (root / "shards").glob("*.tar")) == [s["name"] for s in index["shards"]]
    for shard in index["shards"]:
        data = (root / "shards" / shard["name"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["bytes"] == len(data)
        assert len(_read_tar(root / "shards" / shard["name"])) == 3 * shard["count"]
    assert [s.sha256 for s in summary.shards] == [s["sha256"] for s in index["shards"]]


def test_tar_headers_carry_nothing_of_the_machine(prepared):
    root, _, _ = prepared
    for member in _read_tar(root / "shards" / "shard-000001.tar"):
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert member.mode == 0o644 and member.isfile()


def test_stats_match_numpy(prepared):
    root, rows, _ = prepared
    images = (
        np.stack([_pixels(sample["png"]) for sample in _samples(root / "shards")]).astype(np.float64) / 255
    )
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert stats["count"] == 23
    np.testing.assert_allclose(stats["mean"], images.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["std"], images.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    assert stats["label_histogram"] == np.bincount([r["label"] for r in rows]).tolist()


def test_same_bytes_for_any_number_of_workers(prepared, tmp_path):
    root, rows, _ = prepared
    prepare_shards(root / "aligned", rows, tmp_path, resolution=RESOLUTION, shard_size=5, workers=2)
    for name in ["index.json", "stats.json", *(f"shard-00000{i}.tar" for i in range(5))]:
        assert (tmp_path / name).read_bytes() == (root / "shards" / name).read_bytes(), name


def test_bad_inputs_are_skipped_with_reasons(tmp_path):
    expected = make_bad_input_corpus(tmp_path / "corpus")
    rows = [{"file": name, "label": None} for name in sorted(expected)]
    summary = prepare_shards(
        tmp_path / "corpus", rows, tmp_path / "out", resolution=32, shard_size=4, workers=1
    )

    skipped = _read_jsonl(tmp_path / "out" / "skipped.jsonl")
    assert {row["file"] for row in skipped} == {
        name for name, outcome in expected.items() if not loadable(outcome)
    }
    for row in skipped:
        assert expected[row["file"]] in row["reason"]
    kept = [name for name in sorted(expected) if loadable(expected[name])]
    samples = _samples(tmp_path / "out")
    assert [json.loads(s["json"])["file"] for s in samples] == kept
    assert all(_pixels(s["png"]).shape == (32, 32, 3) and "cls" not in s for s in samples)
    assert summary.count == len(kept) and summary.skipped == len(skipped)
    assert summary.skip_reasons["decompression bomb"] == 1
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["labels"] == {"has_labels": False, "num_classes": 0}


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no usable image among the 1 listed"):
        prepare_shards(tmp_path, [{"file": "empty.png", "label": None}], tmp_path / "out", resolution=8)
    assert _read_jsonl(tmp_path / "out" / "skipped.jsonl") == [
        {"file": "empty.png", "reason": "zero-byte file"}
    ]
    assert not (tmp_path / "out" / "index.json").exists()


def test_box_downscale_is_the_block_mean_and_differs_from_lanczos(tmp_path):
    # 2x2 blocks [[m+e+d1, m+e-d1], [m-e+d2, m-e-d2]] average to m exactly, in each of PIL's two passes.
    rng = np.random.default_rng(3)
    m = rng.integers(40, 216, (16, 16, 3))
    e, d1, d2 = (rng.integers(-20, 21, (16, 16, 3)) for _ in range(3))
    blocks = np.stack([np.stack([m + e + d1, m + e - d1], -1), np.stack([m - e + d2, m - e - d2], -1)], -2)
    image = blocks.transpose(0, 3, 1, 4, 2).reshape(32, 32, 3).astype(np.uint8)
    np.testing.assert_array_equal(image.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3)), m)
    PIL.Image.fromarray(image).save(tmp_path / "a.png")
    rows = [{"file": "a.png", "label": None}]

    results = {}
    for filter in ("box", "lanczos"):
        prepare_shards(tmp_path, rows, tmp_path / filter, resolution=16, filter=filter, workers=1)
        results[filter] = _pixels(_samples(tmp_path / filter)[0]["png"]).astype(int)
        assert json.loads((tmp_path / filter / "index.json").read_text())["filter"] == filter
    np.testing.assert_array_equal(results["box"], m)
    assert np.abs(results["lanczos"] - m).mean() > 3


def test_non_square_inputs_center_cropped_or_padded(tmp_path):
    rows = _write_images(tmp_path, 2, seed=4, size=(32, 16))  # 32 wide, 16 high
    wide = [np.asarray(PIL.Image.open(tmp_path / row["file"])) for row in rows]
    prepare_shards(tmp_path, rows, tmp_path / "crop", resolution=16, workers=1)
    for sample, original in zip(_samples(tmp_path / "crop"), wide, strict=True):
        np.testing.assert_array_equal(_pixels(sample["png"]), original[:, 8:24])

    prepare_shards(tmp_path, rows, tmp_path / "pad", resolution=32, crop="pad", workers=1)
    for sample, original in zip(_samples(tmp_path / "pad"), wide, strict=True):
        padded = _pixels(sample["png"])
        assert (padded[:8] == 0).all() and (padded[24:] == 0).all()  # black bands above and below
        np.testing.assert_array_equal(padded[8:24], original)


def test_rerun_replaces_previous_shards(prepared, tmp_path):
    root, rows, _ = prepared
    prepare_shards(root / "aligned", rows, tmp_path, resolution=RESOLUTION, shard_size=2, workers=1)
    prepare_shards(root / "aligned", rows, tmp_path, resolution=RESOLUTION, shard_size=20, workers=1)
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-000000.tar", "shard-000001.tar"]


@pytest.mark.parametrize(
    "kwargs, rows, message",
    [
        ({"resolution": 48}, [{"file": "a.png", "label": None}], "power of two >= 4, got 48"),
        ({"resolution": 2}, [{"file": "a.png", "label": None}], "power of two >= 4, got 2"),
        ({"resolution": 8, "filter": "cubic"}, [{"file": "a.png", "label": None}], "unknown resize filter"),
        ({"resolution": 8, "crop": "zoom"}, [{"file": "a.png", "label": None}], "crop must be"),
        ({"resolution": 8}, [{"file": "../a.png", "label": None}], "relative path"),
        (
            {"resolution": 8},
            [{"file": "a.png", "label": 1}, {"file": "b.png", "label": None}],
            "'b.png' has none",
        ),
        ({"resolution": 8}, [{"file": "a.png", "label": -1}], "a.png.*integer >= 0"),
        ({"resolution": 8}, [{"file": "a.png", "label": True}], "a.png.*integer >= 0"),
        ({"resolution": 8}, [{"file": "a.png"}, {"file": "a.png"}], "more than once"),
        ({"resolution": 8}, [{"label": 0}], "row 0 has no 'file'"),
    ],
)
def test_invalid_settings_and_rows(tmp_path, kwargs, rows, message):
    with pytest.raises(ValueError, match=message):
        prepare_shards(tmp_path, rows, tmp_path / "out", workers=1, **kwargs)
