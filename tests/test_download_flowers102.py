"""pipeline.download.flowers102 against a tiny fake Oxford Flowers 102 (a tgz of JPEGs and the two
.mat files, made here with tarfile and scipy.io.savemat) served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import PIL.Image
import pytest
import scipy.io

from pipeline.download import ChecksumError, DownloadError, download_flowers102, read_manifest
from pipeline.download.flowers102 import safe_extract
from tests.test_download_http import FAST
from tests.test_download_server import FileServer

LABELS = np.array([[3, 1, 1, 2, 3, 3, 2, 1, 4, 4]], dtype=np.uint8)  # 1-based, as in the real file
SETID = {"trnid": [[2, 4, 9]], "valid": [[1, 5, 10]], "tstid": [[3, 6, 7, 8]]}


@pytest.fixture
def server():
    with FileServer() as file_server:
        yield file_server


def _mat(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays)
    return buffer.getvalue()


def _tgz(members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


class FakeFlowers:
    def __init__(self, server: FileServer, *, archive: bytes | None = None) -> None:
        rng = np.random.default_rng(3)
        self.jpegs = {}
        for image_id in range(1, LABELS.size + 1):
            buffer = io.BytesIO()
            PIL.Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            self.jpegs[f"jpg/image_{image_id:05d}.jpg"] = buffer.getvalue()
        self.bodies = {
            "102flowers.tgz": archive if archive is not None else _tgz(self.jpegs),
            "imagelabels.mat": _mat({"labels": LABELS}),
            "setid.mat": _mat({key: np.array(ids, dtype=np.uint16) for key, ids in SETID.items()}),
        }
        for name, body in self.bodies.items():
            server.add(f"/vgg/{name}", body)
        self.base_url = server.base_url + "/vgg"
        self.md5s = {name: hashlib.md5(body).hexdigest() for name, body in self.bodies.items()}


def test_download_verify_extract_with_labels_and_splits(server, tmp_path):
    fake = FakeFlowers(server)
    out = tmp_path / "raw"
    summary = download_flowers102(
        out, base_url=fake.base_url, md5s=fake.md5s, cache_dir=tmp_path / "c", **FAST
    )
    assert summary["images"] == 10 and summary["classes"] == 4
    assert summary["splits"] == {"train": 3, "val": 3, "test": 4}

    rows = read_manifest(out)
    assert [row["label"] for row in rows] == (LABELS.ravel().astype(int) - 1).tolist()
    split_of = {image_id: split for key, split in [("trnid", "train"), ("valid", "val"), ("tstid", "test")]
                for image_id in SETID[key][0]}  # fmt: skip
    assert [row["split"] for row in rows] == [split_of[i] for i in range(1, 11)]
    for row in rows:
        data = fake.jpegs[row["member"]]
        assert row["file"] == f"images/{row['member']}"
        assert (out / row["file"]).read_bytes() == data
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["source_url"] == fake.base_url + "/102flowers.tgz"

    labels = json.loads((out / "labels.json").read_text())
    assert labels == {
        "0": {"name": "class_001", "original_label": 1, "count": 3},
        "1": {"name": "class_002", "original_label": 2, "count": 2},
        "2": {"name": "class_003", "original_label": 3, "count": 3},
        "3": {"name": "class_004", "original_label": 4, "count": 2},
    }


def test_second_run_reuses_verified_archives(server, tmp_path):
    fake = FakeFlowers(server)
    options = {"base_url": fake.base_url, "md5s": fake.md5s, "cache_dir": tmp_path / "c", **FAST}
    download_flowers102(tmp_path / "raw", **options)
    (tmp_path / "raw/images/jpg/image_00001.jpg").unlink()
    summary = download_flowers102(tmp_path / "raw", **options)
    assert summary["already_present"] == 3 and summary["images"] == 10
    assert len(server.requests) == 3
    assert (tmp_path / "raw/images/jpg/image_00001.jpg").read_bytes() == fake.jpegs["jpg/image_00001.jpg"]


def test_published_md5s_reject_other_bytes(server, tmp_path):
    fake = FakeFlowers(server)
    published = (
        "52808999861908f626f3c1f4e79d11fa|e0620be6f572b9609742df49c70aed4d|a5357ecc9cb78c4bef273ce3793fc85c"
    )
    with pytest.raises(ChecksumError, match=rf"md5 [0-9a-f]{{32}}, expected ({published})"):
        download_flowers102(tmp_path / "raw", base_url=fake.base_url, cache_dir=tmp_path / "c", **FAST)
    assert not any((tmp_path / "c" / name).exists() for name in fake.bodies)
    assert not (tmp_path / "raw/manifest.jsonl").exists()


def test_archive_missing_labelled_images_is_an_error(server, tmp_path):
    rng = np.random.default_rng(0)
    fake = FakeFlowers(server, archive=_tgz({"jpg/image_00001.jpg": rng.bytes(10)}))
    with pytest.raises(DownloadError, match="lacks 9 of the 10 labelled images"):
        download_flowers102(
            tmp_path / "raw", base_url=fake.base_url, md5s=fake.md5s, cache_dir=tmp_path / "c"
        )


def test_malicious_archive_is_rejected_before_anything_is_written(server, tmp_path):
    fake = FakeFlowers(server, archive=_tgz({"jpg/image_00001.jpg": b"fine", "../evil": b"escaped"}))
    out = tmp_path / "deep" / "raw"
    with pytest.raises(DownloadError, match=r"refusing to extract '\.\./evil'"):
        download_flowers102(out, base_url=fake.base_url, md5s=fake.md5s, cache_dir=tmp_path / "c", **FAST)
    assert not (out / "evil").exists() and not (out.parent / "evil").exists()
    assert not (out / "images/jpg/image_00001.jpg").exists()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("/etc/evil", tarfile.REGTYPE), ("jpg/link", tarfile.SYMTYPE), ("jpg/hard", tarfile.LNKTYPE),
     ("jpg/dev", tarfile.CHRTYPE), ("jpg/fifo", tarfile.FIFOTYPE)],
)  # fmt: skip
def test_safe_extract_refuses_links_devices_and_absolute_paths(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "../../outside"
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tgz({"jpg/ok.jpg": b"ok"}, extra=[info]))
    with pytest.raises(DownloadError, match=f"refusing to extract '{name}'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "jpg").exists()
