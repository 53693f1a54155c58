"""Networks as safetensors files: weights plus what it takes to rebuild the module.

The file's metadata holds the network's class (``module.QualName``) and its JSON ``init_kwargs``.
Loading imports nothing but registered network classes of the ``stylegan`` package and never
unpickles anything. Writes are atomic (temporary file in the same folder, then ``os.replace``) and
byte-reproducible: the same network gives the same file in any process (:func:`save_safetensors`).
"""

from __future__ import annotations

import importlib
import json
import os
import struct
from collections.abc import Mapping
from typing import TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from stylegan.files import atomic_write_bytes

FORMAT = "stylegan.network/1"
_REGISTRY: dict[str, type[nn.Module]] = {}

ModuleType = TypeVar("ModuleType", bound=type[nn.Module])


def _class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_network(cls: ModuleType) -> ModuleType:
    """Class decorator: allow :func:`load_network` to rebuild ``cls`` (which must set ``init_kwargs``)."""
    if not _class_key(cls).startswith("stylegan."):
        raise ValueError(f"only classes of the stylegan package can be registered, got {_class_key(cls)}")
    _REGISTRY[_class_key(cls)] = cls
    return cls


def save_network(
    path: str | os.PathLike[str], module: nn.Module, extra_metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``module``'s state dict and rebuild information to a safetensors file at ``path``.

    ``extra_metadata`` (strings) is stored beside, e.g. the model family and its training config."""
    key = _class_key(type(module))
    if key not in _REGISTRY:
        raise ValueError(f"{key} is not a registered network class; known: {sorted(_REGISTRY)}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    metadata = {
        **(extra_metadata or {}),
        "format": FORMAT,
        "class": key,
        "init_kwargs": json.dumps(module.init_kwargs),
    }
    save_safetensors(tensors, path, metadata)


def save_safetensors(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """``safetensors.torch.save_file``, written atomically, with the same bytes in every process.

    safetensors writes the metadata in the order of a Rust hash map, which changes from one process to the
    next; here it is sorted, so that identical networks give identical files (and DVC hashes)."""
    data = save(dict(tensors), metadata=dict(metadata) if metadata else None)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= length:  # the same header, sorted, space-padded to its length (the format allows)
            data = data[:8] + text.ljust(length) + data[8 + length :]
    atomic_write_bytes(path, data)


def read_file_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """All metadata of a network file (``format``, ``class``, ``init_kwargs`` and any extra keys)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_network_metadata(path: str | os.PathLike[str]) -> tuple[str, dict]:
    """Return ``(class key, init_kwargs)`` of a network file without loading its weights."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a stylegan network file (metadata format={metadata.get('format')!r})")
    try:
        return metadata["class"], json.loads(metadata["init_kwargs"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: broken network metadata: {e!r}") from None


def _resolve_class(key: str, path: str | os.PathLike[str]) -> type[nn.Module]:
    module_name, _, _ = key.rpartition(".")
    if key not in _REGISTRY and module_name.startswith("stylegan."):
        try:  # registration happens when the defining module is imported
            importlib.import_module(module_name)
        except ImportError:
            pass
    if key not in _REGISTRY:
        raise ValueError(f"{path}: unknown network class {key!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[key]


def load_network(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the network saved at ``path`` and load its weights; returned in eval mode on ``device``."""
    key, init_kwargs = read_network_metadata(path)
    module = _resolve_class(key, path)(**init_kwargs)
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            tensors[name] = f.get_tensor(name)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit {key}: {e}") from None
    return module.to(device).eval()
