"""pipeline.download.http and .batch against a real HTTP server on 127.0.0.1: bytes arrive intact and
verified, faults are retried, permanent failures are not, and nothing incomplete or wrong is ever left
under the final name."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest

from pipeline.download.batch import FileSpec, download_files
from pipeline.download.http import (
    ChecksumError,
    DownloadError,
    QuotaExceededError,
    download_file,
    partial_path,
)
from tests.test_download_server import FileServer

FAST = {"retries": 3, "backoff": 0.001, "timeout": 5}
QUOTA_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
    b"<p>Too many users have viewed or downloaded this file recently. Please try accessing the file "
    b"again later.</p></body></html>"
)


@pytest.fixture
def server():
    with FileServer() as file_server:
        yield file_server


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


def _sums(data: bytes) -> dict:
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def test_downloads_and_verifies(server, payload, tmp_path):
    url = server.add("/f.bin", payload)
    received = []
    dest = download_file(url, tmp_path / "sub" / "f.bin", **_sums(payload), on_bytes=received.append, **FAST)
    assert dest.read_bytes() == payload
    assert sum(received) == len(payload)
    assert not partial_path(dest).exists()


@pytest.mark.parametrize("kind", ["md5", "sha256", "size"])
def test_wrong_bytes_are_never_accepted(server, payload, tmp_path, kind):
    url = server.add("/f.bin", payload)
    expected = {kind: _sums(payload[:-1] + b"!")[kind] if kind != "size" else len(payload) + 1}
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match=kind):
        download_file(url, dest, **expected, **FAST)
    assert not dest.exists() and not partial_path(dest).exists()
    assert len(server.requests_for("/f.bin")) == FAST["retries"] + 1


def test_corrupt_transfer_is_retried(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["wrong"])
    dest = download_file(url, tmp_path / "f.bin", **_sums(payload), **FAST)
    assert dest.read_bytes() == payload
    assert len(server.requests_for("/f.bin")) == 2


def test_server_errors_are_retried(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["500", "503"])
    assert download_file(url, tmp_path / "f.bin", **_sums(payload), **FAST).read_bytes() == payload
    assert len(server.requests_for("/f.bin")) == 3


def test_persistent_server_error_gives_up(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["500"] * 10)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=r"after 4 attempts.*HTTP 500"):
        download_file(url, dest, **FAST)
    assert not dest.exists()


def test_not_found_fails_at_once_naming_the_url(server, tmp_path):
    url = server.base_url + "/nothing/here.png"
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:\d+/nothing/here\.png: HTTP 404") as info:
        download_file(url, tmp_path / "here.png", **FAST)
    assert not isinstance(info.value, ChecksumError)
    assert len(server.requests_for("/nothing/here.png")) == 1


def test_dropped_connection_resumes_with_range(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["drop", "drop"])
    dest = download_file(url, tmp_path / "f.bin", **_sums(payload), **FAST)
    assert dest.read_bytes() == payload
    ranges = [request.headers.get("Range") for request in server.requests_for("/f.bin")]
    half, quarter = len(payload) // 2, (len(payload) - len(payload) // 2) // 2
    assert ranges == [None, f"bytes={half}-", f"bytes={half + quarter}-"]


def test_server_ignoring_range_restarts_cleanly(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["drop", "ignore-range"])
    dest = download_file(url, tmp_path / "f.bin", **_sums(payload), **FAST)
    assert dest.read_bytes() == payload


def test_a_partial_file_never_takes_the_final_name(server, payload, tmp_path):
    url = server.add("/f.bin", payload, faults=["drop"] * (FAST["retries"] + 1))
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="connection closed after"):
        download_file(url, dest, **FAST)  # no checksum given: completeness still comes from the length
    assert not dest.exists()
    kept = partial_path(dest).stat().st_size
    assert 0 < kept < len(payload)  # kept, for the next run to resume
    assert download_file(url, dest, **_sums(payload), **FAST).read_bytes() == payload
    assert server.requests_for("/f.bin")[-1].headers["Range"] == f"bytes={kept}-"


def test_bad_partial_file_is_discarded(server, payload, tmp_path):
    url = server.add("/f.bin", payload)
    dest = tmp_path / "f.bin"
    partial_path(dest).write_bytes(b"garbage that is no prefix of the file")
    assert download_file(url, dest, **_sums(payload), **FAST).read_bytes() == payload
    assert [r.headers.get("Range") is not None for r in server.requests_for("/f.bin")] == [True, False]


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}.*after 4 attempts"):
        download_file(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin", **FAST)


def test_google_drive_quota_page_is_reported_not_retried(server, tmp_path):
    url = server.add("/uc?id=abc", QUOTA_PAGE, content_type="text/html; charset=utf-8")
    dest = tmp_path / "f.png"
    with pytest.raises(QuotaExceededError, match="Google Drive quota exceeded for http.*/uc\\?id=abc"):
        download_file(url, dest, md5="0" * 32, **FAST)
    assert len(server.requests_for("/uc?id=abc")) == 1
    assert not dest.exists() and not partial_path(dest).exists()


def test_quota_page_with_an_error_status_is_recognised(server, tmp_path):
    url = server.add("/uc?id=abc", QUOTA_PAGE, content_type="text/html", status=403)
    with pytest.raises(QuotaExceededError):
        download_file(url, tmp_path / "f.png", **FAST)
    assert len(server.requests_for("/uc?id=abc")) == 1


def test_quota_page_sent_with_a_binary_content_type_is_recognised(server, tmp_path):
    url = server.add("/uc?id=abc", QUOTA_PAGE, content_type="application/octet-stream")
    with pytest.raises(QuotaExceededError):
        download_file(url, tmp_path / "f.png", **FAST)


def test_google_drive_virus_scan_page_is_confirmed(server, payload, tmp_path):
    form = (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
        '<form id="download-form" action="/download" method="get">'
        '<input type="submit" value="Download anyway"/>'
        '<input type="hidden" name="id" value="abc"><input type="hidden" name="export" value="download">'
        '<input type="hidden" name="confirm" value="t"></form></body></html>'
    )
    url = server.add("/uc?id=abc", form.encode(), content_type="text/html; charset=utf-8")
    server.add("/download?id=abc&export=download&confirm=t", payload)
    assert download_file(url, tmp_path / "f.bin", **_sums(payload), **FAST).read_bytes() == payload


def test_unexpected_html_page_is_an_error(server, tmp_path):
    url = server.add(
        "/f.png", b"<html><head><title>Login required</title></head></html>", content_type="text/html"
    )
    with pytest.raises(DownloadError, match="HTML page.*Login required"):
        download_file(url, tmp_path / "f.png", **FAST)
    assert len(server.requests_for("/f.png")) == 1


def test_batch_resume_rechecks_present_files(server, tmp_path):
    rng = np.random.default_rng(1)
    bodies = {f"/{i}.bin": rng.integers(0, 256, 5000 + i, dtype=np.uint8).tobytes() for i in range(6)}
    specs = [
        FileSpec(server.add(path, body), tmp_path / path[1:], md5=hashlib.md5(body).hexdigest())
        for path, body in bodies.items()
    ]
    first = download_files(specs, workers=3, **FAST)
    assert (first.downloaded, first.already_present) == (6, 0)
    assert all((tmp_path / path[1:]).read_bytes() == body for path, body in bodies.items())

    (tmp_path / "1.bin").write_bytes(b"tampered")  # present but wrong: must be fetched again
    (tmp_path / "2.bin").unlink()  # missing: fetched again
    second = download_files(specs, workers=3, **FAST)
    assert (second.downloaded, second.already_present) == (2, 4)
    assert [len(server.requests_for(path)) for path in bodies] == [1, 2, 2, 1, 1, 1]
    assert all((tmp_path / path[1:]).read_bytes() == body for path, body in bodies.items())


def test_batch_stops_on_the_first_permanent_error(server, tmp_path):
    specs = [FileSpec(server.add("/ok.bin", b"ok"), tmp_path / "ok.bin")]
    specs.append(FileSpec(server.base_url + "/missing.bin", tmp_path / "missing.bin"))
    with pytest.raises(DownloadError, match="missing.bin: HTTP 404"):
        download_files(specs, workers=2, **FAST)
    assert not (tmp_path / "missing.bin").exists()


def test_local_mirror_through_file_url(payload, tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.bin").write_bytes(payload)
    url = (tmp_path / "mirror" / "f.bin").as_uri()
    assert download_file(url, tmp_path / "out" / "f.bin", **_sums(payload), **FAST).read_bytes() == payload
