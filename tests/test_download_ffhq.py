"""pipeline.download.ffhq against a tiny fake FFHQ (metadata JSON + PNGs) served on 127.0.0.1.

The expected pixel md5s are computed here from the pixel arrays the PNGs were made from, not by
decoding the PNGs, so they check the decoding and hashing of the code independently.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import PIL.Image
import pytest

from pipeline.download import ChecksumError, QuotaExceededError, download, download_ffhq, read_manifest
from tests.test_download_http import FAST, QUOTA_PAGE
from tests.test_download_server import FileServer

NUM_RECORDS = 12  # more than 10, so that sorting the string keys as text would be caught
KINDS = {"thumbnail": ("thumbnails128x128", (16, 16)), "image": ("images1024x1024", (24, 24))}
WILD = ("in-the-wild-images", (40, 30))


@pytest.fixture
def server():
    with FileServer() as file_server:
        yield file_server


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeFFHQ:
    """Metadata records with Google-Drive-like URLs, the same files under /mirror/<file_path>."""

    def __init__(self, server: FileServer, *, drive_quota: bool = False) -> None:
        rng = np.random.default_rng(7)
        self.server = server
        self.files: dict[str, bytes] = {}
        self.landmarks: dict[str, list] = {}
        self.metadata: dict[str, dict] = {}
        for i in range(NUM_RECORDS):
            record = {"category": "training" if i % 4 else "validation", "metadata": {"license": "test"}}
            for key, (folder, size) in [*KINDS.items(), ("in_the_wild", WILD)]:
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                body = _png(pixels)
                file_path = f"{folder}/{i - i % 1000:05d}/{i:05d}.png"
                drive_path = f"/uc?id={key}{i}"
                server.add(drive_path, QUOTA_PAGE if drive_quota else body, content_type="image/png")
                server.add(f"/mirror/{file_path}", body, content_type="image/png")
                self.files[file_path] = body
                record[key] = {
                    "file_url": server.base_url + drive_path,
                    "file_path": file_path,
                    "file_size": len(body),
                    "file_md5": hashlib.md5(body).hexdigest(),
                    "pixel_size": list(size),
                    "pixel_md5": hashlib.md5(pixels.tobytes()).hexdigest(),
                }
            landmarks = rng.uniform(0, 30, (68, 2)).round(2).tolist()
            record["in_the_wild"]["face_landmarks"] = landmarks
            self.landmarks[record["in_the_wild"]["file_path"]] = landmarks
            self.metadata[str(i)] = record
        self.publish()

    def publish(self) -> None:
        self.metadata_bytes = json.dumps(self.metadata).encode()
        self.metadata_url = self.server.add(
            "/meta.json", self.metadata_bytes, content_type="application/json"
        )

    @property
    def metadata_md5(self) -> str:
        return hashlib.md5(self.metadata_bytes).hexdigest()


def _run(fake: FakeFFHQ, out_dir, cache_dir, **kwargs):
    options = {"metadata_url": fake.metadata_url, "metadata_md5": fake.metadata_md5, "workers": 3, **FAST}
    return download_ffhq(out_dir, cache_dir=cache_dir, **{**options, **kwargs})


def test_thumbnails_download_and_verify(server, tmp_path):
    fake = FakeFFHQ(server)
    out = tmp_path / "raw"
    summary = _run(fake, out, tmp_path / "cache", variant="thumbnails128", max_images=3)
    assert summary["images"] == 3 and summary["downloaded"] == 3 and summary["classes"] is None

    rows = read_manifest(out)
    paths = [f"thumbnails128x128/00000/{i:05d}.png" for i in range(3)]
    assert [row["file"] for row in rows] == [f"images/{path}" for path in paths]
    assert [row["ffhq_index"] for row in rows] == [0, 1, 2]
    assert [row["split"] for row in rows] == ["validation", "training", "training"]
    for row, path in zip(rows, paths, strict=True):
        body = fake.files[path]
        assert (out / row["file"]).read_bytes() == body
        assert row["sha256"] == hashlib.sha256(body).hexdigest() and row["size"] == len(body)
        assert row["label"] is None
        assert row["source_url"].endswith(f"/uc?id=thumbnail{int(path[-9:-4])}")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [r["file"] for r in rows]
    assert not (out / "landmarks.json").exists()
    assert summary["bytes"] == sum(row["size"] for row in rows)


def test_in_the_wild_writes_landmarks_for_align(server, tmp_path):
    fake = FakeFFHQ(server)
    out = tmp_path / "raw"
    _run(fake, out, tmp_path / "cache", variant="in_the_wild", max_images=2)
    rows = read_manifest(out)
    landmarks = json.loads((out / "landmarks.json").read_text())
    assert list(landmarks) == [row["file"] for row in rows]
    for row in rows:
        assert landmarks[row["file"]] == fake.landmarks[row["file"].removeprefix("images/")]
        assert PIL.Image.open(out / row["file"]).size == WILD[1]


def test_quota_page_is_reported_with_the_mirror_hint(server, tmp_path):
    fake = FakeFFHQ(server, drive_quota=True)
    out = tmp_path / "raw"
    with pytest.raises(QuotaExceededError) as info:
        _run(fake, out, tmp_path / "cache", max_images=1, workers=1)
    assert str(info.value) == (
        "Google Drive quota exceeded for thumbnails128x128/00000/00000.png; "
        "use a mirror via data.ffhq.base_url"
    )
    assert not list(out.rglob("*.png"))


def test_mirror_base_url_replaces_drive_urls(server, tmp_path):
    fake = FakeFFHQ(server, drive_quota=True)
    out = tmp_path / "raw"
    summary = _run(fake, out, tmp_path / "cache", variant="images1024", base_url=server.base_url + "/mirror/")
    assert summary["images"] == NUM_RECORDS
    rows = read_manifest(out)
    assert rows[10]["source_url"] == f"{server.base_url}/mirror/images1024x1024/00000/00010.png"
    assert all((out / row["file"]).read_bytes() == fake.files[row["file"][7:]] for row in rows)
    assert not any(request.path.startswith("/uc") for request in server.requests)


def test_pixel_md5_mismatch_is_rejected(server, tmp_path):
    fake = FakeFFHQ(server)
    fake.metadata["0"]["thumbnail"]["pixel_md5"] = "0" * 32  # file md5 still right: only decoding can tell
    fake.publish()
    out = tmp_path / "raw"
    with pytest.raises(ChecksumError, match="pixel md5"):
        _run(fake, out, tmp_path / "cache", max_images=1)
    assert not (out / "images/thumbnails128x128/00000/00000.png").exists()


def test_pixel_size_mismatch_is_rejected(server, tmp_path):
    fake = FakeFFHQ(server)
    fake.metadata["0"]["thumbnail"]["pixel_size"] = [128, 128]
    fake.publish()
    with pytest.raises(ChecksumError, match=r"image size \[16, 16\], expected \[128, 128\]"):
        _run(fake, tmp_path / "raw", tmp_path / "cache", max_images=1)


def test_resume_rechecks_files_and_removes_strays(server, tmp_path):
    fake = FakeFFHQ(server)
    out, cache = tmp_path / "raw", tmp_path / "cache"
    _run(fake, out, cache, max_images=4)
    (out / "images/thumbnails128x128/00000/00001.png").write_bytes(b"not the file")
    (out / "images/thumbnails128x128/00000/00002.png").unlink()
    (out / "images/thumbnails128x128/00000/stray.png").write_bytes(b"from an older run")

    summary = _run(fake, out, cache, max_images=4)
    assert (summary["downloaded"], summary["already_present"]) == (2, 2)
    assert [len(server.requests_for(f"/uc?id=thumbnail{i}")) for i in range(5)] == [1, 2, 2, 1, 0]
    assert len(server.requests_for("/meta.json")) == 1  # the cached metadata passed its md5 check
    assert not (out / "images/thumbnails128x128/00000/stray.png").exists()
    for row in read_manifest(out):
        assert (out / row["file"]).read_bytes() == fake.files[row["file"].removeprefix("images/")]


def test_wrong_metadata_md5_is_rejected(server, tmp_path):
    fake = FakeFFHQ(server)
    with pytest.raises(ChecksumError, match="meta.json.*md5"):
        _run(fake, tmp_path / "raw", tmp_path / "cache", metadata_md5="f" * 32)


def test_dispatcher_takes_the_params_section(server, tmp_path):
    fake = FakeFFHQ(server)
    params = {
        "variant": "thumbnails128", "metadata_url": fake.metadata_url, "metadata_md5": fake.metadata_md5,
        "base_url": None, "max_images": 2, "workers": 2, "retries": 1, "cache_dir": tmp_path / "cache",
    }  # fmt: skip
    assert download("ffhq", params, tmp_path / "raw")["images"] == 2
    with pytest.raises(ValueError, match=r"data.ffhq has unknown keys \['mirror'\]"):
        download("ffhq", {"mirror": "x"}, tmp_path / "raw")


def test_metadata_quota_and_unverifiable_cache(server, tmp_path):
    fake = FakeFFHQ(server)
    server.add("/drive-meta", QUOTA_PAGE, content_type="text/html")
    with pytest.raises(
        QuotaExceededError, match=r"ffhq-dataset-v2\.json; use a mirror via data.ffhq.metadata_url"
    ):
        _run(fake, tmp_path / "raw", tmp_path / "cache", metadata_url=server.base_url + "/drive-meta")
    for _ in range(2):  # without an md5 a cached copy proves nothing: it is fetched every time
        _run(fake, tmp_path / "raw", tmp_path / "cache", metadata_md5=None, max_images=1)
    assert len(server.requests_for("/meta.json")) == 2
