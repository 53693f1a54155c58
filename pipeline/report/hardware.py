"""What the report says about the machine: CPU, memory, GPUs and the library versions that matter."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_model", "describe_hardware"]


def cpu_model() -> str:
    """The CPU's model name (speed ratios differ between CPUs: benchmarks name it with their figures)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str | None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return f"{total / 2**30:.1f} GiB"


def _gpus() -> str:
    if not torch.cuda.is_available():
        return "none"
    names = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        names.append(f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
    return ", ".join(names)


def describe_hardware() -> dict[str, str]:
    """The machine this process runs on, as label -> text for the report's hardware table."""
    info = {
        "CPU": cpu_model(),
        "CPU cores": str(os.cpu_count()),
        "Memory": _memory_gib(),
        "GPU": _gpus(),
        "CUDA": torch.version.cuda if torch.cuda.is_available() else None,
        "PyTorch": torch.__version__,
        "Python": platform.python_version(),
        "OS": platform.platform(),
    }
    return {key: value for key, value in info.items() if value}
