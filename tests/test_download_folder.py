"""pipeline.download.folder: the user's own images are found recursively, by extension in any case,
in a deterministic order, copied or hard-linked with their relative paths, optionally labelled by
subfolder; a missing or empty folder is a clear error."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pipeline.download import DownloadError, download, import_folder, read_manifest


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    files = {
        "tulips/b.JPG": b"tulip b",
        "tulips/a.jpeg": b"tulip a",
        "roses/red/1.png": b"rose 1",
        "roses/2.WebP": b"rose 2",
        "daisies/x.tif": b"daisy",
        "daisies/y.Tiff": b"daisy y",
        "daisies/z.gif": b"daisy z",
        "daisies/w.bmp": b"daisy w",
        "daisies/notes.txt": b"not an image",
        "tulips/.hidden/c.jpg": b"in a hidden folder",
        "tulips/._a.jpeg": b"a macOS resource fork",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


EXPECTED_ORDER = [
    "daisies/w.bmp", "daisies/x.tif", "daisies/y.Tiff", "daisies/z.gif",
    "roses/2.WebP", "roses/red/1.png", "tulips/a.jpeg", "tulips/b.JPG",
]  # fmt: skip


def test_copies_images_with_relative_paths(photos, tmp_path):
    out = tmp_path / "raw"
    summary = import_folder(out, path=photos)
    rows = read_manifest(out)
    assert [row["file"] for row in rows] == [f"images/{name}" for name in EXPECTED_ORDER]
    for row, name in zip(rows, EXPECTED_ORDER, strict=True):
        data = (photos / name).read_bytes()
        assert (out / row["file"]).read_bytes() == data
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size"] == len(data)
        assert row["label"] is None and row["source_url"] is None
        assert row["source"] == str(photos / name)
        assert not os.path.samefile(out / row["file"], photos / name)  # copied, not linked
    assert summary == {
        "source": "folder", "images": 8, "bytes": sum(r["size"] for r in rows), "classes": None,
        "linked": 0, "copied": 8,
    }  # fmt: skip
    assert not (out / "labels.json").exists()


def test_hard_links_when_asked(photos, tmp_path):
    out = tmp_path / "raw"
    summary = import_folder(out, path=photos, link=True)
    assert summary["linked"] == 8
    assert all(os.path.samefile(out / row["file"], row["source"]) for row in read_manifest(out))


def test_labels_from_subfolders(photos, tmp_path):
    out = tmp_path / "raw"
    summary = download("folder", {"path": str(photos), "labels_from_subdirs": True}, out)
    assert summary["classes"] == 3
    rows = read_manifest(out)
    assert [row["label"] for row in rows] == [0, 0, 0, 0, 1, 1, 2, 2]
    assert json.loads((out / "labels.json").read_text()) == {
        "0": {"name": "daisies", "count": 4},
        "1": {"name": "roses", "count": 2},
        "2": {"name": "tulips", "count": 2},
    }


def test_rerun_replaces_the_previous_import(photos, tmp_path):
    out = tmp_path / "raw"
    import_folder(out, path=photos, labels_from_subdirs=True)
    (photos / "tulips/b.JPG").unlink()
    import_folder(out, path=photos)
    assert not (out / "images/tulips/b.JPG").exists()
    assert not (out / "labels.json").exists()
    assert len(read_manifest(out)) == 7


def test_loose_images_cannot_be_labelled_by_subfolder(photos, tmp_path):
    (photos / "loose.png").write_bytes(b"x")
    with pytest.raises(DownloadError, match=r"1 images .* are in no subfolder.*'loose\.png'"):
        import_folder(tmp_path / "raw", path=photos, labels_from_subdirs=True)


def test_missing_empty_or_unset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=f"'{tmp_path / 'nowhere'}' is not a folder"):
        import_folder(tmp_path / "raw", path=tmp_path / "nowhere")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images")
    with pytest.raises(DownloadError, match=f"'{tmp_path / 'empty'}' holds no image files"):
        import_folder(tmp_path / "raw", path=tmp_path / "empty")
    with pytest.raises(DownloadError, match="data.folder.path is not set"):
        download("folder", {"path": None}, tmp_path / "raw")


def test_output_inside_the_source_is_refused(photos):
    with pytest.raises(DownloadError, match="lies inside data.folder.path"):
        import_folder(photos / "raw", path=photos)
