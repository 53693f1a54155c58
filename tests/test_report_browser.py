"""The rendered report in a real headless Chromium, driven over the DevTools protocol.

The report folder is served by ``http.server`` on 127.0.0.1; the page must load without console errors,
failed requests or requests to any other host, and every ``<img>`` must decode (``naturalWidth > 0``).
A full-page screenshot is written beside the report for people to look at.
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.test_report import render_full_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


class DevTools:
    """A minimal DevTools-protocol client for one page target: commands, and the events seen so far."""

    def __init__(self, ws_url: str) -> None:
        self._socket = connect(ws_url, max_size=None, open_timeout=20)
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.events:
                if message.get("method") == event:
                    return message
            message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def served_report(tmp_path):
    """The full report served over HTTP on 127.0.0.1: yields (base URL, report folder)."""
    report_dir = render_full_report(tmp_path)
    handler = functools.partial(_QuietHandler, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", report_dir
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002  (the base class's name)
        pass


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium with remote debugging on a free port; yields a DevTools client of its page."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port = _devtools_port(profile / "DevToolsActivePort", process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        client = DevTools(page["webSocketDebuggerUrl"])
        yield client
        client.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(active_port_file: Path, process: subprocess.Popen, timeout: float = 30) -> int:
    """Chromium writes the port it bound to (``--remote-debugging-port=0``) into DevToolsActivePort."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}: {process.stderr.read().decode()}")
        if active_port_file.exists():
            lines = active_port_file.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError(f"chromium wrote no {active_port_file} within {timeout} s")


@pytest.mark.slow
def test_report_loads_cleanly_in_chromium(served_report, browser):
    base_url, report_dir = served_report
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable")
    browser.call("Page.navigate", url=base_url + "index.html")
    browser.wait_for("Page.loadEventFired")

    images = browser.evaluate(
        "Promise.all([...document.images].map(i => i.decode().catch(() => null)))"
        ".then(() => [...document.images].map(i => ({src: i.getAttribute('src'), "
        "width: i.naturalWidth, height: i.naturalHeight})))"
    )
    on_disk = sorted(
        p.relative_to(report_dir).as_posix()
        for p in report_dir.rglob("*")
        if p.is_file() and p.suffix != ".html"
    )
    assert sorted(image["src"] for image in images) == on_disk  # every figure is on the page, once
    broken = [image["src"] for image in images if image["width"] == 0 or image["height"] == 0]
    assert not broken, f"images that did not decode: {broken}"
    assert any(image["src"].endswith(".webp") for image in images)  # the animation decodes too

    events = browser.events
    console_errors = [
        e["params"]
        for e in events
        if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
    ]
    exceptions = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    log_errors = [
        e["params"]["entry"]
        for e in events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    failed = [e["params"] for e in events if e.get("method") == "Network.loadingFailed"]
    bad_status = [
        (e["params"]["response"]["url"], e["params"]["response"]["status"])
        for e in events
        if e.get("method") == "Network.responseReceived" and e["params"]["response"]["status"] >= 400
    ]
    assert not (console_errors or exceptions or log_errors or failed or bad_status), (
        console_errors,
        exceptions,
        log_errors,
        failed,
        bad_status,
    )
    requested = [
        e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested and all(url.startswith(base_url) for url in requested), requested  # nothing remote

    # The page reads as a report: every section is there and the metric table has its numbers.
    headings = browser.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent.trim())")
    assert headings == [
        "Real and generated",
        "Samples",
        "Training",
        "Metrics",
        "Data",
        "Params that differ from the default",
        "Timings and hardware",
    ]
    assert "40" in browser.evaluate("document.querySelector('td.best').textContent")

    metrics = browser.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1},
    )
    screenshot = report_dir.parent / "screenshot.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.stat().st_size > 10_000


@pytest.mark.slow
def test_metric_tables_stay_readable_in_a_narrow_window(served_report, browser):
    """At phone width the short cells keep to one line (the table scrolls sideways instead) and a reason
    for an unavailable metric wraps in lines of several words, not one word per line."""
    base_url, _ = served_report
    browser.call(
        "Emulation.setDeviceMetricsOverride", width=420, height=800, deviceScaleFactor=1, mobile=False
    )
    browser.call("Page.enable")
    browser.call("Page.navigate", url=base_url + "index.html")
    browser.wait_for("Page.loadEventFired")
    lines = browser.evaluate(
        "[...document.querySelectorAll('#metrics td.direction, #metrics td.key, #metrics td.num')]"
        ".filter(td => td.textContent.trim()).map(td => { const r = document.createRange(); "
        "r.selectNodeContents(td); "
        "const tops = new Set([...r.getClientRects()].map(b => Math.round(b.top))); "
        "return [td.textContent.trim(), tops.size]; })"
    )
    assert any(text == "↓ lower is better" for text, _ in lines)
    assert all(count == 1 for _, count in lines), [item for item in lines if item[1] != 1]
    cell = "document.querySelector('#metrics td.unavailable')"
    width, font_size = browser.evaluate(
        f"[{cell}.clientWidth, parseFloat(getComputedStyle({cell}).fontSize)]"
    )
    assert width >= 18 * font_size  # about 40 characters a line
