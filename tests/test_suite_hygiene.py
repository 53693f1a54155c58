"""The test suite itself (issue 14): it behaves the same online and offline, and CI runs every test, the
slow ones included."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stylegan.metrics.detectors import DETECTORS, default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_URL = DETECTORS["vgg16"].urls[0]  # 528 MB, were a test to fetch it
FETCH = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)"


def test_no_test_reaches_past_this_machine():
    started = time.monotonic()
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(WEIGHTS_URL, timeout=30)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    # ... nor does a command a test starts (DVC stages, flows, servers inherit the environment).
    child = subprocess.run([sys.executable, "-c", FETCH, WEIGHTS_URL], capture_output=True, text=True)
    assert child.returncode != 0 and "Connection refused" in child.stderr
    assert time.monotonic() - started < 20  # refused at once, never a timeout


def test_local_servers_stay_reachable():
    for host in ("127.0.0.1", "localhost"):  # MLflow and Prefect servers, fake mirrors
        assert urllib.request.proxy_bypass_environment(host)


def test_detector_weights_go_to_a_folder_of_the_session(tmp_path_factory):
    cache = default_cache_dir()
    assert cache.is_relative_to(tmp_path_factory.getbasetemp())
    assert not cache.is_relative_to(Path.home() / ".cache")


def test_ci_runs_every_test_the_slow_ones_included():
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.MULTILINE)
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)[1]
    pytest_arguments = re.search(r"\bpytest\b(.*)", recipe)[1].split()
    assert "-m" not in pytest_arguments and "not slow" not in recipe
    pyproject = (ROOT / "pyproject.toml").read_text()
    addopts = re.search(r"^addopts\s*=\s*(.*)$", pyproject, re.MULTILINE)
    assert addopts is None or "-m" not in addopts[1].strip("\"' ").split()
    assert re.search(r'^markers\s*=.*"slow:', pyproject, re.MULTILINE)
