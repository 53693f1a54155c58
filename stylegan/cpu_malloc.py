"""Keep glibc malloc from giving freed tensor memory back to the kernel between training steps.

PyTorch's CPU tensors come straight from ``malloc``. With glibc's default (adaptive) thresholds, a
training step frees hundreds of MiB at the top of the heap, glibc returns it to the kernel, and the
next step's tensors fault every 4 KiB page back in, zero-filled. Training the 64 px reference network
that way takes about 10,000 minor page faults per image; raising the mmap and trim thresholds keeps
the memory in the heap for reuse, which cuts that to 500 and trains x1.2 faster, for 10% more peak
RSS (``benchmarks/bench_malloc.py``).

Applied by training and by the metrics' feature extraction on the CPU. It leaves the allocator
alone where the user has already chosen: ``MALLOC_*`` tuning variables, an allocator in
``LD_PRELOAD`` (jemalloc, tcmalloc), or ``STYLEGAN_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Allocations up to this size come from the heap rather than fresh (zero-filled) mmap()s.
MMAP_THRESHOLD = 1 << 30
# Free memory at the top of the heap is returned to the kernel only beyond this size.
TRIM_THRESHOLD = 1 << 30
_SETTINGS = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))

OPT_OUT_VARIABLE = "STYLEGAN_KEEP_FREED_MEMORY"

_applied = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for tensor-sized reuse; return whether they are in effect.

    Idempotent. Returns ``False`` (and changes nothing) off glibc, or where the user has tuned or
    replaced the allocator (see the module docstring).
    """
    global _applied
    if _applied:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    user_choice = [key for key in os.environ if key.startswith("MALLOC_") and key.endswith("_")]
    if os.environ.get(OPT_OUT_VARIABLE) == "0":
        user_choice.append(f"{OPT_OUT_VARIABLE}=0")
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        user_choice.append("LD_PRELOAD")
    if user_choice:
        log.info("leaving malloc as configured by %s", ", ".join(sorted(user_choice)))
        return False
    libc = ctypes.CDLL(None)
    accepted = [libc.mallopt(param, value) for param, value in _SETTINGS]
    if not all(accepted):
        log.warning("glibc refused the malloc thresholds; CPU training may spend time in page faults")
        return False
    _applied = True
    return True
