"""Files that identify a result are the same bytes whichever process writes them: a network saved in two
processes is one file (safetensors alone orders its metadata differently in each), so a resumed run's
generator and DVC's hash of it match an uninterrupted run's. And a full disk is recognised whichever
library's writer reports it."""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

from stylegan.files import is_disk_full

ROOT = Path(__file__).resolve().parents[1]
SAVE = """
import sys, torch
from stylegan.networks_stylegan2 import Generator
from stylegan.serialization import save_network
torch.manual_seed(0)
G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
              synthesis_kwargs={"channel_base": 64, "channel_max": 16})
save_network(sys.argv[1], G, extra_metadata={"family": "stylegan2", "training_config": "{}", "z": "last"})
"""


def test_a_network_saved_in_two_processes_is_the_same_file(tmp_path):
    digests = set()
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.safetensors"
        subprocess.run([sys.executable, "-c", SAVE, str(path)], cwd=ROOT, check=True)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata()["z"] == "last" and f.metadata()["family"] == "stylegan2"
    assert len(digests) == 1


def test_full_disks_are_recognised_from_any_writer():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(RuntimeError("I/O error: No space left on device (os error 28)"))  # safetensors
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
