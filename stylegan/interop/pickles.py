"""NVIDIA's network pickles (``network-snapshot-*.pkl``), read without running any code from the file.

StyleGAN2-ADA (NVlabs/stylegan2-ada-pytorch) and StyleGAN3 (NVlabs/stylegan3) write a snapshot with a
plain ``pickle.dump`` of ``dict(G=, D=, G_ema=, augment_pipe=, training_set_kwargs=)``. Each network is
an instance of a class decorated by ``torch_utils.persistence.persistent_class``, which pickles it as
the call ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where

    meta = dict(type='class', version=6, module_src=<source of the whole defining module>,
                class_name='Generator', state=<the module's __dict__: _parameters, _buffers,
                _modules (child persistent objects), _init_args, _init_kwargs, ...>)

Loading that normally ``exec``s ``module_src``. Tensors inside are pickled by torch's own reducers:
``torch._utils._rebuild_parameter`` and ``_rebuild_tensor_v2`` around a storage pickled as
``torch.storage._load_from_bytes(<a legacy torch.save of the storage>)``. Numpy arrays and scalars
appear among the networks' plain attributes, ``dnnlib.util.EasyDict`` among their arguments.

:class:`RestrictedUnpickler` resolves only these globals: the two tensor rebuilders, the storage loader
(re-routed through ``torch.load(weights_only=True)``), ``collections.OrderedDict``, numpy's array,
dtype and scalar reconstructors, ``EasyDict`` (read as a plain dict), the persistence hook (which
returns a :class:`PersistentRecord`, data only) and, for TensorFlow-era pickles, dnnlib's TF
``Network`` (a :class:`~stylegan.interop.tf_pickles.TFNetworkRecord`). Anything else, and any
persistent id, is refused with :class:`PickleRefusedError` naming what was asked for.

The meta carries no module name, so the defining module is recognised from the classes its source
declares (the source is only searched as text, never compiled or run): ``SynthesisInput`` makes
``training.networks_stylegan3``, ``AugmentPipe`` ``training.augment``, ``DiscriminatorEpilogue``
``training.networks_stylegan2`` of the stylegan3 repository when the source has its
``fused_modconv_default`` argument, else ``training.networks`` of stylegan2-ada-pytorch. Only the
network classes of those modules are accepted.

The records then become our networks: their ``_init_kwargs`` build the network (with the defaults of
the recognised module where they differ from ours) and the tensors under ``_parameters``/``_buffers``,
named as ``state_dict()`` names them, load through the checked importers of :mod:`.stylegan2_npz` and
:mod:`.stylegan3_npz`.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from stylegan.interop import tf_pickles
from stylegan.interop.stylegan2_npz import discriminator_from_official, generator_from_official
from stylegan.interop.stylegan3_npz import stylegan3_generator_from_official

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray

PERSISTENCE_VERSION = 6  # torch_utils.persistence._version of both NVIDIA repositories

_STYLEGAN2_CLASSES = frozenset(
    {
        "FullyConnectedLayer",
        "Conv2dLayer",
        "MappingNetwork",
        "SynthesisLayer",
        "ToRGBLayer",
        "SynthesisBlock",
        "SynthesisNetwork",
        "Generator",
        "DiscriminatorBlock",
        "MinibatchStdLayer",
        "DiscriminatorEpilogue",
        "Discriminator",
    }
)
# Persistent classes accepted, by the NVIDIA module that defines them.
PERSISTENT_CLASSES: dict[str, frozenset[str]] = {
    "training.networks": _STYLEGAN2_CLASSES,  # stylegan2-ada-pytorch
    "training.networks_stylegan2": _STYLEGAN2_CLASSES,  # stylegan3's copy, with other defaults
    "training.networks_stylegan3": frozenset(
        {
            "FullyConnectedLayer",
            "MappingNetwork",
            "SynthesisInput",
            "SynthesisLayer",
            "SynthesisNetwork",
            "Generator",
        }
    ),
    "training.augment": frozenset({"AugmentPipe"}),
}

# Defaults of stylegan3's training/networks_stylegan2.py that differ from stylegan2-ada-pytorch's (and
# ours): a snapshot records only the arguments that were passed.
_SG3_REPO_SYNTHESIS_DEFAULTS = {"conv_clamp": 256, "num_fp16_res": 4}
_SG3_REPO_MAPPING_DEFAULTS = {"w_avg_beta": 0.998}
_SG3_REPO_DISCRIMINATOR_DEFAULTS = {"conv_clamp": 256, "num_fp16_res": 4}
# Arguments of that Generator that choose how, not what, it computes; ours has no such argument.
_SG3_REPO_EXECUTION_ONLY = ("fused_modconv_default",)
_GENERATOR_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


class PickleRefusedError(ValueError):
    """The pickle asks for something that is not read from pickles (named in the message)."""


# --------------------------------------------------------------------------------------------------
# Unpickling


@dataclass(frozen=True, slots=True)
class PersistentRecord:
    """One ``torch_utils.persistence`` object as data: its class and its pickled ``__dict__``.

    ``module`` is the NVIDIA module recognised from the pickled source (see the module docstring).
    """

    module: str
    class_name: str
    state: dict[str, Any]

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.class_name}"

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The recorded constructor keywords, as plain Python values (NVIDIA never passes positionals)."""
        if self.state.get("_init_args"):
            raise ValueError(f"{self.qualname} was built with positional arguments; expected keywords only")
        return _plain(self.state.get("_init_kwargs") or {})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this object and its children, named as ``state_dict()``."""
        tensors: dict[str, torch.Tensor] = {}
        self._collect(tensors, "")
        return tensors

    def _collect(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        non_persistent = self.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(
                        f"{self.qualname}: {group}[{prefix}{name!r}] is a {type(value).__name__}"
                    )
                tensors[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise ValueError(f"{self.qualname}: child {prefix}{name} is a {type(child).__name__}")
            child._collect(tensors, f"{prefix}{name}.")


def _declared_classes(module_src: str) -> set[str]:
    return set(re.findall(r"^class\s+(\w+)", module_src, flags=re.MULTILINE))


def recognise_module(module_src: str) -> str | None:
    """The NVIDIA module whose source this is (by the classes it declares), or None."""
    classes = _declared_classes(module_src)
    if "SynthesisInput" in classes:
        return "training.networks_stylegan3"
    if "AugmentPipe" in classes:
        return "training.augment"
    if "DiscriminatorEpilogue" in classes:
        return "training.networks_stylegan2" if "fused_modconv_default" in module_src else "training.networks"
    return None


def _persistent_record(meta: Any) -> PersistentRecord:
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: checks, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise PickleRefusedError("persistent object with a meta that is not a dict of type 'class'")
    class_name, module_src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(module_src, str) or not isinstance(state, dict):
        raise PickleRefusedError("persistent object without class_name, module_src and state")
    module = recognise_module(module_src)
    if module is None or class_name not in PERSISTENT_CLASSES[module]:
        declared = ", ".join(sorted(_declared_classes(module_src))) or "none"
        raise PickleRefusedError(
            f"refused persistent class {module or '<unrecognised module>'}.{class_name} "
            f"(its source declares: {declared}); only the networks of NVIDIA's StyleGAN2-ADA and "
            f"StyleGAN3 are read, and their source is never run"
        )
    if class_name not in _declared_classes(module_src):
        raise PickleRefusedError(f"persistent class {module}.{class_name} is not declared by its own source")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise PickleRefusedError(
            f"persistent class {module}.{class_name} has persistence version {meta.get('version')!r}; "
            f"expected {PERSISTENCE_VERSION}"
        )
    return PersistentRecord(module, class_name, state)


def _storage_from_bytes(data: bytes) -> torch.TypedStorage | torch.UntypedStorage:
    """``torch.storage._load_from_bytes``, but through torch's weights-only unpickler, onto the CPU."""
    if not isinstance(data, bytes):
        raise PickleRefusedError(f"torch.storage._load_from_bytes given a {type(data).__name__}")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PickleRefusedError(
            f"a tensor storage was refused by torch's weights-only loader: {e}"
        ) from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise PickleRefusedError(f"a pickled tensor storage holds a {type(storage).__name__}")
    return storage


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib.tflib.network", "Network"): tf_pickles.TFNetworkRecord,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{
        (module, name): getattr(_np_multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals NVIDIA's network pickles need (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PickleRefusedError(
                f"refused to load global {module}.{name}: network pickles are read as tensors, arrays and "
                f"NVIDIA's persistent network classes only"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefusedError(
            f"refused persistent id {str(pid)[:80]!r}: NVIDIA's network pickles have none (a torch.save "
            f"file is a checkpoint, read with torch.load(weights_only=True))"
        )


def restricted_load(file: BinaryIO, source: str = "pickle") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`; a broken file is a ValueError naming ``source``.

    Refusals are :class:`PickleRefusedError` (a ValueError too), prefixed with ``source``.
    """
    try:
        return RestrictedUnpickler(file).load()
    except PickleRefusedError as e:
        raise PickleRefusedError(f"{source}: {e}") from None
    except Exception as e:  # any failure of a hand-written pickle: truncated, wrong arguments, ...
        raise ValueError(f"{source}: not a readable network pickle: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------------
# Records to our networks


def _plain(value: Any) -> Any:
    """Dicts, lists and numbers of standard Python types (EasyDicts, tuples, numpy scalars converted)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _expect_record(value: Any, source: str) -> PersistentRecord:
    if not isinstance(value, PersistentRecord):
        raise ValueError(f"{source}: expected an NVIDIA network, found a {type(value).__name__}")
    return value


def _stylegan2_generator_kwargs(record: PersistentRecord) -> dict[str, Any]:
    """Our :class:`~stylegan.networks_stylegan2.Generator` arguments from a recorded StyleGAN2 generator.

    stylegan3's copy takes the synthesis arguments flat (``**synthesis_kwargs``) and has other defaults.
    """
    kwargs = record.init_kwargs
    if record.module == "training.networks":
        return kwargs
    top = {k: kwargs.pop(k) for k in _GENERATOR_TOP_LEVEL if k in kwargs}
    mapping = {**_SG3_REPO_MAPPING_DEFAULTS, **kwargs.pop("mapping_kwargs", {})}
    for name in _SG3_REPO_EXECUTION_ONLY:
        kwargs.pop(name, None)
    return dict(top, mapping_kwargs=mapping, synthesis_kwargs={**_SG3_REPO_SYNTHESIS_DEFAULTS, **kwargs})


def _generator(value: Any, source: str) -> nn.Module:
    record = _expect_record(value, source)
    if record.class_name != "Generator":
        raise ValueError(f"{source}: expected a generator, found {record.qualname}")
    if record.module == "training.networks_stylegan3":
        return stylegan3_generator_from_official(record.state_dict(), record.init_kwargs, source)
    return generator_from_official(record.state_dict(), _stylegan2_generator_kwargs(record), source)


def _discriminator(value: Any, source: str) -> nn.Module:
    record = _expect_record(value, source)
    if record.class_name != "Discriminator":
        raise ValueError(f"{source}: expected a discriminator, found {record.qualname}")
    kwargs = record.init_kwargs
    if record.module == "training.networks_stylegan2":
        kwargs = {**_SG3_REPO_DISCRIMINATOR_DEFAULTS, **kwargs}
    return discriminator_from_official(record.state_dict(), kwargs, source)


def _augment_p(value: Any, source: str) -> float:
    """The augmentation probability ``p`` of the pipeline; 0 when the run had none."""
    if value is None:
        return 0.0
    record = _expect_record(value, source)
    if record.qualname != "training.augment.AugmentPipe":
        raise ValueError(f"{source}: expected an AugmentPipe, found {record.qualname}")
    p = (record.state.get("_buffers") or {}).get("p")
    if not isinstance(p, torch.Tensor) or p.numel() != 1:
        raise ValueError(f"{source}: AugmentPipe has no scalar buffer 'p'")
    return float(p)


def load_official_pkl(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Networks of an NVIDIA pickle as our modules, without running any code from the file.

    Reads StyleGAN2-ADA and StyleGAN3 snapshots (``network-snapshot-*.pkl``, fp16 layers and conditional
    networks included) and the TensorFlow-era pickles :mod:`.tf_pickles` supports. Returns a dict:

    - ``G``, ``D``, ``G_ema``: our networks in eval mode (:class:`~stylegan.networks_stylegan2.Generator`
      and ``Discriminator``; StyleGAN3 generators as
      :class:`~stylegan.networks_stylegan3.StyleGAN3Generator`, their discriminator is StyleGAN2's);
    - ``augment_p``: the ADA augmentation probability (float; 0.0 when the snapshot has no augmentation
      pipeline, None for TF pickles, which do not record it);
    - ``training_set_kwargs``: the dataset arguments of the run (dict; None when not recorded).

    Raises :class:`PickleRefusedError` for anything the file asks for that is not read from pickles and
    ValueError for a file that is not such a pickle or does not fit our networks.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = restricted_load(f, str(path))
    if tf_pickles.is_tf_snapshot(data):
        return tf_pickles.networks_from_tf(data, str(path))
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a snapshot dict or a TF (G, D, Gs) tuple, got {type(data).__name__}"
        )
    missing = [k for k in ("G", "D", "G_ema") if k not in data]
    if missing:
        raise ValueError(f"{path}: snapshot lacks {missing}; it has {sorted(map(str, data))}")
    training_set_kwargs = data.get("training_set_kwargs")
    if training_set_kwargs is not None and not isinstance(training_set_kwargs, dict):
        raise ValueError(f"{path}: training_set_kwargs is a {type(training_set_kwargs).__name__}")
    return dict(
        G=_generator(data["G"], f"{path} (G)"),
        D=_discriminator(data["D"], f"{path} (D)"),
        G_ema=_generator(data["G_ema"], f"{path} (G_ema)"),
        augment_p=_augment_p(data.get("augment_pipe"), f"{path} (augment_pipe)"),
        training_set_kwargs=None if training_set_kwargs is None else _plain(training_set_kwargs),
    )
