"""Fetching weight files: urllib with a timeout, streamed to a temporary file, checked, renamed."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from stylegan.files import atomic_open, atomic_write_json

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DownloadError(RuntimeError):
    """No URL could deliver the file; the message lists every attempt, ``causes`` says why in a few words
    each (``HTTP 404``, ``no network``, ...), without the URLs."""

    def __init__(self, message: str, causes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.causes = list(causes)


def short_cause(error: BaseException) -> str:
    """Why a download failed, in a few words."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return "no network (host name not resolved)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(error, DownloadError):
        return "; ".join(error.causes) or str(error)
    return str(reason) if isinstance(error, urllib.error.URLError) else type(error).__name__


def _fetch_one(url: str, dest: Path, timeout: float, expected_sha256: str | None) -> str:
    """Download ``url`` to ``dest`` atomically and return the file's sha256."""
    digest = hashlib.sha256()
    with atomic_open(dest) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
            raise DownloadError(
                f"sha256 mismatch: expected {expected_sha256}, got {digest.hexdigest()}", ["sha256 mismatch"]
            )
    return digest.hexdigest()


def download(
    urls: Sequence[str], dest: Path, timeout: float = 60.0, expected_sha256: str | None = None
) -> str:
    """Fetch the first URL that works into ``dest``; record url/sha256/size next to it as ``<dest>.json``.

    Returns the sha256 of the file. Raises :class:`DownloadError` naming every URL tried and why it failed.
    """
    if not urls:
        raise DownloadError(f"no download URL is known for {dest.name}", ["no URL known"])
    failures, causes = [], []
    for url in urls:
        try:
            sha256 = _fetch_one(url, dest, timeout, expected_sha256)
        except (OSError, ValueError, DownloadError) as err:  # URLError/HTTPError/timeouts are OSErrors
            failures.append(f"{url}: {err}")
            causes.append(short_cause(err))
            continue
        record = {"url": url, "sha256": sha256, "size": dest.stat().st_size, "downloaded_at": time.time()}
        atomic_write_json(dest.with_name(dest.name + ".json"), record)
        return sha256
    raise DownloadError("; ".join(failures), list(dict.fromkeys(causes)))
