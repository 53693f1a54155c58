"""The data sources of the ``download`` stage.

Every source writes the same layout into its output folder: the images under ``images/``, one
``manifest.jsonl`` row per image (``file``, ``size``, ``sha256``, ``label``, ``source_url`` and
source-specific keys), ``labels.json`` for labelled data, and, for FFHQ in-the-wild photos,
``landmarks.json``. :func:`download` runs the source named by ``data.source``.

The names below load their module on first use (PEP 562), so that importing one source does not import
the others: the demo's worker processes start without scipy or the params schema.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.download.demo import generate_demo
    from pipeline.download.ffhq import download_ffhq
    from pipeline.download.flowers102 import download_flowers102
    from pipeline.download.folder import import_folder
    from pipeline.download.http import ChecksumError, DownloadError, QuotaExceededError, download_file
    from pipeline.download.manifest import read_manifest

SOURCES = {  # data.source -> the function that fills the output folder
    "demo": "generate_demo",
    "folder": "import_folder",
    "ffhq": "download_ffhq",
    "flowers102": "download_flowers102",
}
_MODULES = {
    "generate_demo": "demo",
    "import_folder": "folder",
    "download_ffhq": "ffhq",
    "download_flowers102": "flowers102",
    "download_file": "http",
    "DownloadError": "http",
    "ChecksumError": "http",
    "QuotaExceededError": "http",
    "read_manifest": "manifest",
}
__all__ = [
    "SOURCES",
    "ChecksumError",
    "DownloadError",
    "QuotaExceededError",
    "download",
    "download_ffhq",
    "download_file",
    "download_flowers102",
    "generate_demo",
    "import_folder",
    "read_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def download(
    source: str, params: Mapping[str, Any] | Any | None, out_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Fill `out_dir` from the data source `source` and return its summary (``images``, ``bytes``,
    ``classes`` and source-specific counts).

    params: that source's own section (``data.demo``, ``data.folder``, ...), as a mapping or a pydantic
        model; its keys are the keyword arguments of the source's function.
    """
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {sorted(SOURCES)}, got {source!r}")
    function = __getattr__(SOURCES[source])
    if params is None:
        kwargs: dict[str, Any] = {}
    elif hasattr(params, "model_dump"):
        kwargs = params.model_dump()
    else:
        kwargs = dict(params)
    accepted = set(inspect.signature(function).parameters) - {"out_dir"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"data.{source} has unknown keys {unknown}; {function.__name__} accepts {sorted(accepted)}"
        )
    return function(out_dir, **kwargs)
