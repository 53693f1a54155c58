"""A real HTTP server on 127.0.0.1 with scripted faults, for the download tests, and tests that its
faults behave as the other tests assume.

Each route serves fixed bytes; a route's fault list is consumed one entry per request:
``"drop"`` (announce the full length, send half, close the connection), ``"wrong"`` (same length, one
byte changed), ``"500"`` / ``"503"`` / ``"404"`` (that status), ``"ignore-range"`` (answer a Range
request with the whole file and status 200). Every request's path and headers are recorded.
"""

from __future__ import annotations

import http.client
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    body: bytes
    content_type: str = "application/octet-stream"
    faults: list[str] = field(default_factory=list)
    status: int = 200


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


class FileServer:
    """Serves registered routes; use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        faults: Sequence[str] = (),
        status: int = 200,
    ) -> str:
        """Serve `body` at `path` (which may carry a query string) with `status`; return its URL."""
        self.routes[path] = Route(body, content_type, list(faults), status)
        return self.base_url + path

    def requests_for(self, path: str) -> list[Request]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _next_fault(self, route: Route) -> str | None:
        with self._lock:
            return route.faults.pop(0) if route.faults else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(Request(self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                fault = server._next_fault(route)
                if fault in ("404", "500", "503"):
                    self.send_error(int(fault))
                    return
                body = route.body
                if fault == "wrong":
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and fault != "ignore-range" and route.status == 200:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                payload = body[start:]
                if fault == "drop":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def server():
    with FileServer() as file_server:
        yield file_server


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
        return response.status, response.read()


def test_serves_bytes_and_ranges(server):
    url = server.add("/a.bin", b"0123456789")
    assert _get(url) == (200, b"0123456789")
    assert _get(url, {"Range": "bytes=4-"}) == (206, b"456789")
    assert [r.headers.get("Range") for r in server.requests_for("/a.bin")] == [None, "bytes=4-"]


def test_drop_sends_half_and_closes(server):
    url = server.add("/a.bin", b"x" * 1000, faults=["drop"])
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Length"] == "1000"
        try:
            received = response.read()
        except http.client.IncompleteRead as exc:
            received = exc.partial
    assert received == b"x" * 500
    assert _get(url) == (200, b"x" * 1000)  # faults are used up one per request


def test_status_and_wrong_bytes_faults(server):
    url = server.add("/a.bin", b"abc", faults=["500", "wrong", "ignore-range"])
    with pytest.raises(urllib.error.HTTPError, match="500"):
        _get(url)
    assert _get(url) == (200, bytes([ord("a") ^ 0xFF]) + b"bc")
    assert _get(url, {"Range": "bytes=1-"}) == (200, b"abc")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(server.base_url + "/missing")
