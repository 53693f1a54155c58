"""TensorFlow-era NVIDIA pickles, read as data and mapped onto our StyleGAN2 networks.

NVIDIA's TF code (NVlabs/stylegan, stylegan2, stylegan2-ada) pickles ``(G, D, Gs)``: three
``dnnlib.tflib.network.Network`` objects, each written by its ``__getstate__`` as a dict with
``version`` (3: StyleGAN, 4: StyleGAN2, 5: StyleGAN2-ADA TF), ``name``, ``static_kwargs`` (the
arguments the training script gave), ``components`` (sub-networks: G's ``mapping`` and ``synthesis``),
``build_module_src`` and ``build_func_name`` (the graph-building code, which dnnlib ``exec``s when the
pickle is loaded normally; here it is never run) and ``variables`` (``[(name, numpy array)]``). The
restricted unpickler of :mod:`.pickles` reads each Network as a :class:`TFNetworkRecord`.

Supported, as the same function (names and layouts converted, shapes checked, every variable used):

- StyleGAN2 (NVlabs/stylegan2) configs E and F, unconditional: ``G_main`` + ``G_mapping`` +
  ``G_synthesis_stylegan2`` (orig, skip or resnet) and ``D_stylegan2`` (orig, skip or resnet): the
  published ``stylegan2-*-config-f.pkl`` files;
- StyleGAN2-ADA TF (NVlabs/stylegan2-ada), conditional or not, with fp16 layers and ``conv_clamp``:
  ``G_main`` + ``G_mapping`` + ``G_synthesis`` and ``D_main``.

Both become :class:`~stylegan.networks_stylegan2.Generator` / ``Discriminator``. The variable mapping is
the one NVIDIA's stylegan2-ada-pytorch ``legacy.py`` applies: TF convolution weights ``[kh, kw, in,
out]`` become ``[out, in, kh, kw]``, flipped in both spatial axes for the upsampling convolutions (TF
runs them as transposed convolutions); dense weights are transposed; style biases gain +1 (TF adds the
1 after the layer); ``synthesis/noise{i}`` become the layers' ``noise_const``; ``dlatent_avg`` becomes
``mapping.w_avg``. Missing arguments take the defaults of the build function that made the network:
unlike legacy.py, StyleGAN2's mapping keeps its 512 hidden features and its D its minibatch-stddev
groups of 4, and ADA's label embedding is ``latent_size`` wide.

Refused, with a message naming the reason:

- StyleGAN v1 (``karras2019stylegan-*.pkl``: ``G_style`` / ``D_basic``) and StyleGAN2 configs A-D
  (``G_synthesis_stylegan_revised``, ``D_stylegan``): progressive-growing networks with AdaIN or
  other layer structures; no network here computes the same function from those weights;
- conditional StyleGAN2 (NVlabs/stylegan2) networks: its labels are concatenated to z before the
  normalisation and D scores per label, unlike StyleGAN2-ADA's embedding and projection;
- ADA-TF comparison methods (PA-GAN, spectral normalisation, adaptive dropout, several scores), and
  ``fmap_decay``/``fmap_min``/``fmap_const``/``normalize_latents``/``resample_kernel`` off their
  defaults; a D whose ``Dense0`` width ``nf(0)`` differs from its 4x4 width ``nf(1)``.

TF pickles record neither the augmentation probability nor the dataset arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan.interop.stylegan2_npz import discriminator_from_official, generator_from_official
from stylegan.networks_stylegan2 import Discriminator, Generator


class TFNetworkRecord:
    """A pickled ``dnnlib.tflib.network.Network`` as the data its ``__getstate__`` wrote, nothing run."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"a TF Network's pickled state is a {type(state).__name__}, not a dict")
        self.state = state

    @property
    def name(self) -> str:
        return str(self.state.get("name"))

    @property
    def build_func_name(self) -> str:
        return str(self.state.get("build_func_name"))

    @property
    def static_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("static_kwargs") or {})

    def component(self, name: str) -> TFNetworkRecord:
        component = (self.state.get("components") or {}).get(name)
        if not isinstance(component, TFNetworkRecord):
            raise ValueError(f"TF network {self.name} has no {name!r} sub-network")
        return component

    def variables(self) -> dict[str, np.ndarray]:
        """All variables; those of sub-networks under ``<component>/`` (``mapping/Dense0/weight``)."""
        found: dict[str, np.ndarray] = {}
        for name, value in self.state.get("variables") or []:
            found[str(name)] = np.asarray(value)
        for prefix, component in (self.state.get("components") or {}).items():
            if not isinstance(component, TFNetworkRecord):
                raise ValueError(
                    f"TF network {self.name}: component {prefix!r} is a {type(component).__name__}"
                )
            found.update({f"{prefix}/{k}": v for k, v in component.variables().items()})
        return found


def is_tf_snapshot(data: Any) -> bool:
    """Whether unpickled ``data`` is a TF-era ``(G, D, Gs)`` tuple."""
    return isinstance(data, tuple) and len(data) == 3 and all(isinstance(x, TFNetworkRecord) for x in data)


# --------------------------------------------------------------------------------------------------
# Build functions and their arguments


@dataclass(frozen=True)
class _Family:
    """One TF code base: the build functions it names and the defaults of their arguments."""

    label: str
    synthesis_func: str
    discriminator_func: str
    conditional: bool
    generator_defaults: Mapping[str, Any]
    discriminator_defaults: Mapping[str, Any]
    runtime_only: frozenset[str]  # arguments that change how the graph runs, not what it computes


_COMMON_SHAPE = dict(
    num_channels=3,
    resolution=1024,
    label_size=0,
    fmap_base=16384,
    fmap_decay=1,
    fmap_min=1,
    fmap_max=512,
    nonlinearity="lrelu",
    resample_kernel=[1, 3, 3, 1],
)
_COMMON_GENERATOR = dict(
    _COMMON_SHAPE,
    latent_size=512,
    dlatent_size=512,
    mapping_layers=8,
    mapping_lrmul=0.01,
    mapping_nonlinearity="lrelu",
    normalize_latents=True,
    dlatent_avg_beta=0.995,
    architecture="skip",
    mapping_func="G_mapping",
)
_COMMON_RUNTIME = frozenset(
    {
        "truncation_psi",
        "truncation_cutoff",
        "truncation_psi_val",
        "truncation_cutoff_val",
        "style_mixing_prob",
        "is_training",
        "is_validation",
        "return_dlatents",
        "randomize_noise",
        "fused_modconv",
        "dtype",
    }
)

_STYLEGAN2 = _Family(
    label="StyleGAN2 (NVlabs/stylegan2)",
    synthesis_func="G_synthesis_stylegan2",
    discriminator_func="D_stylegan2",
    conditional=False,
    generator_defaults=dict(_COMMON_GENERATOR, mapping_fmaps=512, synthesis_func="G_synthesis_stylegan2"),
    discriminator_defaults=dict(
        _COMMON_SHAPE, architecture="resnet", mbstd_group_size=4, mbstd_num_features=1
    ),
    runtime_only=_COMMON_RUNTIME,
)
_STYLEGAN2_ADA = _Family(
    label="StyleGAN2-ADA TF (NVlabs/stylegan2-ada)",
    synthesis_func="G_synthesis",
    discriminator_func="D_main",
    conditional=True,
    generator_defaults=dict(
        _COMMON_GENERATOR,
        mapping_fmaps=None,
        label_fmaps=None,
        fmap_const=None,
        use_noise=True,
        num_fp16_res=0,
        conv_clamp=None,
        synthesis_func="G_synthesis",
    ),
    discriminator_defaults=dict(
        _COMMON_SHAPE,
        architecture="resnet",
        mbstd_group_size=None,
        mbstd_num_features=1,
        mapping_layers=0,
        mapping_fmaps=None,
        mapping_lrmul=0.1,
        num_fp16_res=0,
        conv_clamp=None,
        use_pagan=False,
        score_max=1,
        use_spectral_norm=False,
        adaptive_dropout=0,
        freeze_layers=0,
    ),
    runtime_only=_COMMON_RUNTIME | {"augment_strength", "pagan_num", "pagan_fade", "score_size"},
)
_FAMILIES = (_STYLEGAN2, _STYLEGAN2_ADA)

# Build functions of networks that have no exact counterpart here.
_UNSUPPORTED_FUNCS = {
    "G_style": "StyleGAN v1 generator",
    "D_basic": "StyleGAN v1 discriminator",
    "G_synthesis_stylegan_revised": "StyleGAN2 config A-D synthesis network",
    "D_stylegan": "StyleGAN2 config A-D discriminator",
}


def _refuse_unsupported(func: str, source: str) -> None:
    if func in _UNSUPPORTED_FUNCS:
        raise ValueError(
            f"{source}: {_UNSUPPORTED_FUNCS[func]} ({func}) is not supported: only StyleGAN2 configs E/F "
            f"and StyleGAN2-ADA TF networks have an exact counterpart here"
        )


class _Arguments:
    """A TF network's ``static_kwargs`` over its build functions' defaults; every argument must be used."""

    def __init__(
        self, net: TFNetworkRecord, defaults: Mapping[str, Any], runtime_only: frozenset[str], source: str
    ):
        self.given = net.static_kwargs
        self.defaults = defaults
        self.runtime_only = runtime_only
        self.source = source
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return self.given[name] if name in self.given else self.defaults[name]

    def require(self, name: str, supported: Any) -> None:
        if self[name] != supported:
            raise ValueError(f"{self.source}: {name}={self[name]!r} is not supported (only {supported!r})")

    def unused(self, *names: str) -> None:
        """Mark arguments that do not apply to this network (e.g. label mapping without labels)."""
        self.read.update(names)

    def check_all_read(self) -> None:
        unknown = sorted(set(self.given) - self.read - self.runtime_only)
        if unknown:
            raise ValueError(f"{self.source}: unknown TF network arguments {unknown}")


def _family_of_generator(net: TFNetworkRecord, source: str) -> _Family:
    _refuse_unsupported(net.build_func_name, source)
    if net.build_func_name != "G_main":
        raise ValueError(f"{source}: TF generator built by {net.build_func_name!r}; expected G_main")
    synthesis_func = net.component("synthesis").build_func_name
    _refuse_unsupported(synthesis_func, source)
    for family in _FAMILIES:
        if synthesis_func == family.synthesis_func:
            return family
    raise ValueError(f"{source}: unknown TF synthesis network {synthesis_func!r}")


def _family_of_discriminator(net: TFNetworkRecord, source: str) -> _Family:
    _refuse_unsupported(net.build_func_name, source)
    for family in _FAMILIES:
        if net.build_func_name == family.discriminator_func:
            return family
    raise ValueError(f"{source}: unknown TF discriminator {net.build_func_name!r}")


def _filter(args: _Arguments) -> list[float]:
    kernel = args["resample_kernel"]
    if kernel is None:  # TF's None is a box filter of the resampling factor; ours would be no filter
        raise ValueError(f"{args.source}: resample_kernel=None is not supported")
    return [float(k) for k in kernel]


def _check_shape_arguments(args: _Arguments, family: _Family) -> None:
    args.require("fmap_decay", 1)
    args.require("fmap_min", 1)
    if not family.conditional and args["label_size"]:
        raise ValueError(
            f"{args.source}: conditional {family.label} networks are not supported (their label handling "
            f"differs from StyleGAN2-ADA's)"
        )


def generator_kwargs_from_tf(net: TFNetworkRecord, source: str = "TF generator") -> dict[str, Any]:
    """Our :class:`Generator` arguments for a TF ``G_main`` network (see module docstring)."""
    family = _family_of_generator(net, source)
    args = _Arguments(net, family.generator_defaults, family.runtime_only, source)
    _check_shape_arguments(args, family)
    args.require("normalize_latents", True)
    args.require("mapping_func", "G_mapping")
    args.require("synthesis_func", family.synthesis_func)
    if family is _STYLEGAN2_ADA:
        args.require("fmap_const", None)
    beta = args["dlatent_avg_beta"]
    mapping = dict(
        num_layers=args["mapping_layers"],
        layer_features=args["mapping_fmaps"],
        lr_multiplier=args["mapping_lrmul"],
        activation=args["mapping_nonlinearity"],
        w_avg_beta=1.0 if beta is None else beta,  # TF keeps dlatent_avg either way; None = frozen
    )
    if args["label_size"]:
        mapping["embed_features"] = args["label_fmaps"] or args["latent_size"]  # TF: None = latent_size
    elif family is _STYLEGAN2_ADA:
        args.unused("label_fmaps")
    synthesis = dict(
        channel_base=2 * args["fmap_base"],  # TF: fmap_base / 2**(log2(res) - 1) features at res
        channel_max=args["fmap_max"],
        architecture=args["architecture"],
        resample_filter=_filter(args),
        activation=args["nonlinearity"],
    )
    if family is _STYLEGAN2_ADA:
        synthesis.update(
            use_noise=args["use_noise"], num_fp16_res=args["num_fp16_res"], conv_clamp=args["conv_clamp"]
        )
    kwargs = dict(
        z_dim=args["latent_size"],
        c_dim=args["label_size"],
        w_dim=args["dlatent_size"],
        img_resolution=args["resolution"],
        img_channels=args["num_channels"],
        mapping_kwargs=mapping,
        synthesis_kwargs=synthesis,
    )
    args.check_all_read()
    return kwargs


def discriminator_kwargs_from_tf(net: TFNetworkRecord, source: str = "TF discriminator") -> dict[str, Any]:
    """Our :class:`Discriminator` arguments for a TF ``D_stylegan2`` or ``D_main`` network."""
    family = _family_of_discriminator(net, source)
    args = _Arguments(net, family.discriminator_defaults, family.runtime_only, source)
    _check_shape_arguments(args, family)
    fmap_base, fmap_max = args["fmap_base"], args["fmap_max"]
    if min(fmap_base, fmap_max) != min(fmap_base // 2, fmap_max):
        raise ValueError(
            f"{source}: TF D's Dense0 has nf(0)={min(fmap_base, fmap_max)} features, the 4x4 layers "
            f"nf(1)={min(fmap_base // 2, fmap_max)}; only networks where fmap_max caps both are supported"
        )
    group_size, num_features = args["mbstd_group_size"], args["mbstd_num_features"]
    if family is _STYLEGAN2 and group_size <= 1:  # StyleGAN2 disables the layer by its group size
        num_features = 0
    kwargs: dict[str, Any] = dict(
        c_dim=args["label_size"],
        img_resolution=args["resolution"],
        img_channels=args["num_channels"],
        architecture=args["architecture"],
        channel_base=2 * fmap_base,
        channel_max=fmap_max,
        block_kwargs=dict(activation=args["nonlinearity"], resample_filter=_filter(args)),
        epilogue_kwargs=dict(
            mbstd_group_size=group_size, mbstd_num_channels=num_features, activation=args["nonlinearity"]
        ),
    )
    if family is _STYLEGAN2_ADA:
        for name, supported in (("use_pagan", False), ("use_spectral_norm", False), ("adaptive_dropout", 0)):
            args.require(name, supported)
        args.require("score_max", 1)
        kwargs.update(num_fp16_res=args["num_fp16_res"], conv_clamp=args["conv_clamp"])
        kwargs["block_kwargs"]["freeze_layers"] = args["freeze_layers"]
        if args["label_size"]:
            kwargs["cmap_dim"] = args["mapping_fmaps"] or min(fmap_base, fmap_max)  # TF: nf(0)
            kwargs["mapping_kwargs"] = dict(
                num_layers=args["mapping_layers"],
                activation=args["nonlinearity"],
                lr_multiplier=args["mapping_lrmul"],
            )
        else:
            args.unused("mapping_layers", "mapping_fmaps", "mapping_lrmul")
    args.check_all_read()
    return kwargs


# --------------------------------------------------------------------------------------------------
# Variables


Transform = Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _dense(a: np.ndarray) -> np.ndarray:
    return a.T


def _conv(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)


def _conv_up(a: np.ndarray) -> np.ndarray:
    return a[::-1, ::-1].transpose(3, 2, 0, 1)


def _style_bias(a: np.ndarray) -> np.ndarray:
    return a + 1


def _first(a: np.ndarray) -> np.ndarray:
    return a[0]


def _noise(a: np.ndarray) -> np.ndarray:
    return a[0, 0]


_PARAM_TRANSFORMS = {"weight": _conv, "bias": _same, "noise_strength": _same}


def _noise_index(res: int, layer: str) -> int:
    """TF numbers the synthesis convolutions 0 (4x4), 1, 2 (8x8), ...; conv0 is the first of a block."""
    return 0 if res == 4 else 2 * int(np.log2(res)) - (5 if layer == "conv0" else 4)


def generator_variable(name: str) -> tuple[str, Transform] | None:
    """The TF variable behind our generator's ``name`` and how to convert it; None for derived buffers."""
    if name.endswith("resample_filter"):
        return None
    if name == "mapping.w_avg":
        return "dlatent_avg", _same
    if m := re.fullmatch(r"mapping\.embed\.(weight|bias)", name):
        return f"mapping/LabelEmbed/{m[1]}", _dense
    if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
        return f"mapping/Dense{m[1]}/{m[2]}", _dense
    if name == "synthesis.b4.const":
        return "synthesis/4x4/Const/const", _first
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", name)
    if m is None:
        raise ValueError(f"generator parameter {name} has no TF counterpart")
    res, layer, param = int(m[1]), m[2], m[3]
    scope = {"conv0": "Conv0_up", "conv1": "Conv" if res == 4 else "Conv1", "torgb": "ToRGB", "skip": "Skip"}
    prefix = f"synthesis/{res}x{res}/{scope[layer]}"
    if param == "noise_const":
        return f"synthesis/noise{_noise_index(res, layer)}", _noise
    if param == "affine.weight":
        return f"{prefix}/mod_weight", _dense
    if param == "affine.bias":
        return f"{prefix}/mod_bias", _style_bias
    if param == "weight" and layer in ("conv0", "skip"):
        return f"{prefix}/weight", _conv_up
    return f"{prefix}/{param}", _PARAM_TRANSFORMS[param]


def discriminator_variable(name: str) -> tuple[str, Transform] | None:
    """The TF variable behind our discriminator's ``name`` and how to convert it; None for derived buffers."""
    if name.endswith("resample_filter"):
        return None
    if m := re.fullmatch(r"mapping\.embed\.(weight|bias)", name):
        return f"LabelEmbed/{m[1]}", _dense
    if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
        return f"Mapping{m[1]}/{m[2]}", _dense
    if m := re.fullmatch(r"b4\.(fc|out)\.(weight|bias)", name):
        return f"{'4x4/Dense0' if m[1] == 'fc' else 'Output'}/{m[2]}", _dense
    m = re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|conv|skip)\.(weight|bias)", name)
    if m is None:
        raise ValueError(f"discriminator parameter {name} has no TF counterpart")
    res, layer, param = int(m[1]), m[2], m[3]
    scope = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "conv": "Conv", "skip": "Skip"}
    return f"{res}x{res}/{scope[layer]}/{param}", _conv if param == "weight" else _same


# Variables that hold no weights of the network (G_main's level-of-detail input of progressive growing).
_IGNORED_VARIABLES = frozenset({"lod"})


def state_dict_from_tf(
    module: nn.Module,
    variables: Mapping[str, np.ndarray],
    variable_of: Callable[[str], tuple[str, Transform] | None],
    source: str,
) -> dict[str, torch.Tensor]:
    """``module``'s state dict filled from TF ``variables``; derived buffers are taken from ``module``.

    Every parameter needs its variable and every variable must be used.
    """
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for name, tensor in module.state_dict().items():
        found = variable_of(name)
        if found is None:
            state[name] = tensor
            continue
        tf_name, transform = found
        if tf_name not in variables:
            missing.append(f"{tf_name} (for {name})")
            continue
        used.add(tf_name)
        state[name] = torch.from_numpy(np.array(transform(variables[tf_name]), dtype=np.float32, order="C"))
    unused = sorted(set(variables) - used - _IGNORED_VARIABLES)
    if missing or unused:
        problems = [f"missing TF variables {missing}"] if missing else []
        problems += [f"TF variables with no place in our network {unused}"] if unused else []
        raise ValueError(f"{source}: " + "; ".join(problems))
    return state


def generator_from_tf(net: TFNetworkRecord, source: str = "TF generator") -> Generator:
    """Our :class:`Generator` with the weights of a TF StyleGAN2 / StyleGAN2-ADA generator."""
    kwargs = generator_kwargs_from_tf(net, source)
    state = state_dict_from_tf(Generator(**kwargs), net.variables(), generator_variable, source)
    return generator_from_official(state, kwargs, source)


def discriminator_from_tf(net: TFNetworkRecord, source: str = "TF discriminator") -> Discriminator:
    """Our :class:`Discriminator` with the weights of a TF StyleGAN2 / StyleGAN2-ADA discriminator."""
    kwargs = discriminator_kwargs_from_tf(net, source)
    state = state_dict_from_tf(Discriminator(**kwargs), net.variables(), discriminator_variable, source)
    return discriminator_from_official(state, kwargs, source)


def networks_from_tf(data: tuple[TFNetworkRecord, ...], source: str) -> dict[str, Any]:
    """The ``(G, D, Gs)`` of a TF pickle in :func:`~stylegan.interop.pickles.load_official_pkl`'s form."""
    G, D, Gs = data
    return dict(
        G=generator_from_tf(G, f"{source} (G)"),
        D=discriminator_from_tf(D, f"{source} (D)"),
        G_ema=generator_from_tf(Gs, f"{source} (Gs)"),
        augment_p=None,
        training_set_kwargs=None,
    )
