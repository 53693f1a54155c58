"""Downloading one file over HTTP(S), robustly, with the standard library.

The body streams into ``<dest>.part`` beside the destination and is renamed onto `dest` only after its
size and checksums have been verified, so a file under its final name is always complete and correct.
Connection errors, timeouts, 5xx/408/429 answers, truncated bodies and checksum mismatches are retried
with exponential backoff; an interrupted transfer resumes with an HTTP Range request where the server
supports it. Other 4xx answers (404 ...) fail at once with the URL in the message, and so does an HTML
page where a file was expected (Google Drive's quota page among them).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.download import gdrive
from pipeline.stage import StageError

log = logging.getLogger(__name__)

USER_AGENT = "stylegan-pipeline/0.1 (+python-urllib)"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_HTML_PAGE = 1 << 20  # bytes of an unexpected HTML page read to find out what it says
_CHUNK = 1 << 16
_MAX_BACKOFF = 60.0

ProgressCallback = Callable[[int], None]
Validator = Callable[[Path], None]


class DownloadError(StageError):
    """A data source that cannot deliver as asked (a file that would not download, a missing folder);
    the message names the URL or path and the reason. A :class:`StageError`, so the stage prints it
    without a traceback."""

    def __init__(self, message: str, *, url: str | None = None, dest: Path | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.dest = dest


class ChecksumError(DownloadError):
    """The bytes arrived but are not the expected ones (size, md5, sha256 or a content check)."""


class QuotaExceededError(DownloadError):
    """Google Drive refuses the file for now: too many downloads of it in the last 24 hours."""


class _Retryable(Exception):
    """A failure that another attempt may not meet: a 5xx answer, a truncated body."""


class _FollowUrl(Exception):
    """The server answered with a page that points at the real download."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


# Not OSError as a whole: a full disk or a permission error is no reason to try again.
_TRANSIENT_ERRORS = (
    _Retryable,
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
)


def partial_path(dest: Path) -> Path:
    """Where the bytes of `dest` accumulate until they are verified."""
    return dest.with_name(dest.name + ".part")


def check_file(
    path: Path, *, size: int | None = None, md5: str | None = None, sha256: str | None = None
) -> str | None:
    """What is wrong with the file at `path`, or None if it has the expected size and checksums."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size {actual_size} bytes, expected {size}"
    digests = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256)) if want}
    if digests:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                for digest in digests.values():
                    digest.update(chunk)
    for name, want in (("md5", md5), ("sha256", sha256)):
        if want and digests[name].hexdigest() != want.lower():
            return f"{name} {digests[name].hexdigest()}, expected {want.lower()}"
    return None


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    validate: Validator | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    on_bytes: ProgressCallback | None = None,
) -> Path:
    """Download `url` to `dest` and return `dest`.

    size, md5, sha256: the expected file; any mismatch discards the bytes and counts as a failed attempt.
    validate: a further check of the verified temporary file (e.g. its decoded pixels); it raises
        :class:`ChecksumError` to reject it.
    retries: attempts after the first; the n-th retry waits ``backoff * 2**(n-1)`` seconds (at most 60).
    on_bytes: called with the number of bytes received (negative when received bytes are discarded),
        for progress bars.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    report = on_bytes or (lambda n: None)
    failures = 0
    while True:
        try:
            _fetch(url, dest, request_headers, timeout, report)
            page = _read_html_page(part)  # a page sent as a file, e.g. with a binary content type
            _raise_for_page(url, page, dest)
            problem = check_file(part, size=size, md5=md5, sha256=sha256)
            if problem is not None:
                if page is not None:
                    problem += f" (the server sent an HTML page: {_title(page)!r})"
                raise ChecksumError(f"{url}: {problem}", url=url, dest=dest)
            if validate is not None:
                validate(part)
            os.replace(part, dest)
            return dest
        except _FollowUrl as follow:
            log.info("following Google Drive's confirmation link for %s", url)
            _discard(part, report)  # the page itself, never a prefix of the file
            url = follow.url
            error: Exception = follow
        except ChecksumError as exc:
            _discard(part, report)
            error = exc
        except DownloadError:  # a 4xx answer, a quota page: another attempt would meet the same
            _discard(part, report)
            raise
        except _TRANSIENT_ERRORS as exc:
            error = exc
        failures += 1
        if failures > retries:
            message = f"giving up on {url} after {failures} attempts: {error}"
            kind = ChecksumError if isinstance(error, ChecksumError) else DownloadError
            raise kind(message, url=url, dest=dest) from error
        if not isinstance(error, _FollowUrl):
            delay = min(backoff * 2 ** (failures - 1), _MAX_BACKOFF)
            log.warning("%s (attempt %d of %d); retrying in %.1f s", error, failures, retries + 1, delay)
            time.sleep(delay)


def _discard(part: Path, report: ProgressCallback) -> None:
    if part.exists():
        report(-part.stat().st_size)
        part.unlink()


def _fetch(url: str, dest: Path, headers: dict[str, str], timeout: float, report: ProgressCallback) -> None:
    """Append the rest of `url` to the partial file of `dest` (all of it when there is none or the server
    ignores the Range header)."""
    part = partial_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers=headers)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        _raise_for_page(url, _error_page(exc), dest)  # Google Drive may refuse with a 403 or 429 page
        if exc.code == 416 and offset:  # the partial file is no prefix of this resource: start over
            _discard(part, report)
            raise _Retryable(f"{url}: HTTP 416 for a resumed download, restarting it") from exc
        if exc.code in RETRY_STATUSES:
            raise _Retryable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", url=url, dest=dest) from exc
    with response:
        resumed = bool(offset) and response.status == 206
        if not resumed:
            _discard(part, report)
        elif _range_start(response) != offset:
            _discard(part, report)
            raise _Retryable(f"{url}: asked for bytes from {offset}, got {response.headers['Content-Range']}")
        if response.headers.get_content_type() == "text/html":
            page = response.read(MAX_HTML_PAGE).decode("utf-8", errors="replace")
            _raise_for_page(url, page, dest)
            raise DownloadError(
                f"{url}: expected a file but got an HTML page ({_title(page)!r})", url=url, dest=dest
            )
        length = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if resumed else "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
                report(len(chunk))
        if length is not None and received != int(length):
            raise _Retryable(f"{url}: connection closed after {received} of {length} bytes")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _error_page(error: urllib.error.HTTPError) -> str | None:
    """The HTML body of an error answer, if it has one."""
    try:
        if error.headers is None or error.headers.get_content_type() != "text/html":
            return None
        return error.read(MAX_HTML_PAGE).decode("utf-8", errors="replace")
    except (OSError, ValueError):  # no body to read, or already closed
        return None
    finally:
        error.close()


def _read_html_page(path: Path) -> str | None:
    """The file's text if it is a small HTML page (a server's error page saved as the file), else None."""
    if path.stat().st_size > MAX_HTML_PAGE:
        return None
    with open(path, "rb") as f:
        if not re.match(rb"\s*<(!doctype html|html)", f.read(64), re.IGNORECASE):
            return None
        f.seek(0)
        return f.read().decode("utf-8", errors="replace")


def _raise_for_page(url: str, page: str | None, dest: Path | None) -> None:
    """Raise for a Google Drive quota page, or to follow a virus-scan confirmation; else return."""
    if page is None:
        return
    if gdrive.is_quota_page(page):
        raise QuotaExceededError(f"Google Drive quota exceeded for {url}", url=url, dest=dest)
    confirm = gdrive.confirm_url(page, url)
    if confirm is not None and confirm != url:
        raise _FollowUrl(confirm)


def _title(page: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", page, re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).split()) if match else page[:80]
