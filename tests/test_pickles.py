"""NVIDIA network pickles: exact outputs from real snapshots, refusal of code, synthetic format variants.

The real snapshots (``sg2ada_small.pkl``, ``sg3_t.pkl`` and their ``_outputs.npz``) are read from
``../shared/reference`` (they embed NVIDIA's source, so they are not copied here). The other pickles are
written by this file in NVIDIA's formats: for that, pickle must be able to *write* references to
``torch_utils.persistence._reconstruct_persistent_obj`` and ``dnnlib.tflib.network.Network``, so the
``nvidia_names`` fixture registers stand-ins under those names for the test's duration. The loader
never looks them up: it resolves the names itself.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from stylegan.__main__ import main
from stylegan.augment import AugmentPipe
from stylegan.interop import PickleRefusedError, load_official_pkl
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.networks_stylegan3 import StyleGAN3Generator
from stylegan.serialization import load_network

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
TOL = 1e-4


@pytest.fixture(scope="module")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (NVIDIA's snapshots are not in the repository)")
    return REFERENCE


def max_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    return (actual.detach() - torch.from_numpy(expected)).abs().max().item()


# --------------------------------------------------------------------------------------------------
# Real snapshots: NVIDIA's own outputs


def check_snapshot_outputs(pkl: Path, outputs: Path, noise_kwargs: dict[str, Any]) -> dict[str, Any]:
    loaded = load_official_pkl(pkl)
    with np.load(outputs) as ref:
        z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
        with torch.no_grad():
            for psi, key in ((1.0, "img"), (0.6, "img_trunc_psi0_6")):
                img = loaded["G_ema"](z, c, truncation_psi=psi, **noise_kwargs)
                assert max_error(img, ref[key]) < TOL, f"{key}: {max_error(img, ref[key]):.2e}"
            logits = loaded["D"](torch.from_numpy(ref["img"]), c)
            assert max_error(logits, ref["D_logits"]) < TOL
        assert loaded["augment_p"] == pytest.approx(float(ref["augment_p"]))
    assert loaded["training_set_kwargs"]["resolution"] == 64
    assert loaded["training_set_kwargs"]["class_name"] == "training.dataset.ImageFolderDataset"
    assert not any(m.training for key in ("G", "D", "G_ema") for m in loaded[key].modules())
    return loaded


def test_stylegan2_ada_snapshot_reproduces_nvidia_outputs(reference):
    loaded = check_snapshot_outputs(
        reference / "sg2ada_small.pkl", reference / "sg2ada_small_outputs.npz", dict(noise_mode="const")
    )
    assert isinstance(loaded["G"], Generator) and isinstance(loaded["D"], Discriminator)
    assert loaded["G_ema"].init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 2  # the fp16 layers
    ema, trained = loaded["G_ema"].state_dict(), loaded["G"].state_dict()
    assert any(not torch.equal(ema[k], trained[k]) for k in ema), "G and G_ema are different snapshots"


@pytest.mark.slow  # StyleGAN3's filtered leaky ReLUs on CPU
def test_stylegan3_snapshot_reproduces_nvidia_outputs(reference):
    loaded = check_snapshot_outputs(reference / "sg3_t.pkl", reference / "sg3_t_outputs.npz", {})
    assert isinstance(loaded["G_ema"], StyleGAN3Generator) and isinstance(loaded["G"], StyleGAN3Generator)
    assert isinstance(loaded["D"], Discriminator)  # StyleGAN3 trains with StyleGAN2's discriminator
    assert loaded["G_ema"].init_kwargs["magnitude_ema_beta"] == 0.999


# --------------------------------------------------------------------------------------------------
# Writing NVIDIA's formats


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the loader must resolve this name itself, never call NVIDIA's hook")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class Network:
    """Writes a pickle as dnnlib.tflib.network.Network does: its __getstate__ dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __getstate__(self) -> dict[str, Any]:
        return self.state


Network.__module__ = "dnnlib.tflib.network"


@pytest.fixture
def nvidia_names(monkeypatch):
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(
        sys.modules["torch_utils.persistence"],
        "_reconstruct_persistent_obj",
        _reconstruct_persistent_obj,
        False,
    )
    monkeypatch.setattr(sys.modules["dnnlib.tflib.network"], "Network", Network, False)


def module_source(*class_names: str, prelude: str = "") -> str:
    """A stand-in for a module's embedded source: the classes it declares, after ``prelude``."""
    return prelude + "".join(f"\nclass {name}(torch.nn.Module):\n    pass\n" for name in class_names)


NETWORK_CLASSES = (
    "FullyConnectedLayer Conv2dLayer MappingNetwork SynthesisLayer ToRGBLayer SynthesisBlock "
    "SynthesisNetwork Generator DiscriminatorBlock MinibatchStdLayer DiscriminatorEpilogue Discriminator"
).split()
ADA_NETWORKS_SRC = module_source(*NETWORK_CLASSES)
SG3_REPO_STYLEGAN2_SRC = module_source(*NETWORK_CLASSES) + "\ndef _(fused_modconv_default=True): pass\n"
AUGMENT_SRC = module_source("AugmentPipe")


class PersistencePickler(pickle.Pickler):
    """Pickles our modules the way torch_utils.persistence pickles NVIDIA's: a reconstruct call whose
    meta holds the module source, the class name and the module's state (``__dict__`` essentials)."""

    def __init__(self, file, sources: dict[int, str], init_kwargs: dict[int, dict[str, Any]]) -> None:
        super().__init__(file, protocol=4)
        self.sources = sources  # id(top-level module) -> source of its module, inherited by children
        self.init_kwargs = init_kwargs

    def reducer_override(self, obj):
        if not isinstance(obj, nn.Module):
            return NotImplemented
        source = self.sources[id(obj)]
        for child in obj.children():
            self.sources.setdefault(id(child), source)
        state = dict(
            training=False,
            _parameters=dict(obj._parameters),
            _buffers=dict(obj._buffers),
            _non_persistent_buffers_set=set(obj._non_persistent_buffers_set),
            _modules=dict(obj._modules),
            _init_args=(),
            _init_kwargs=self.init_kwargs.get(id(obj), {}),
        )
        meta = dict(type="class", version=6, module_src=source, class_name=type(obj).__name__, state=state)
        return _reconstruct_persistent_obj, (meta,)


def write_snapshot(path: Path, networks: dict[str, tuple[nn.Module, str, dict[str, Any]]], **extra) -> Path:
    """``networks``: snapshot key -> (module, module source, recorded init_kwargs)."""
    with open(path, "wb") as f:
        PersistencePickler(
            f,
            sources={id(m): src for m, src, _ in networks.values()},
            init_kwargs={id(m): kwargs for m, _, kwargs in networks.values()},
        ).dump({**extra, **{key: module for key, (module, _, _) in networks.items()}})
    return path


def small_generator(**synthesis) -> Generator:
    return Generator(
        z_dim=8,
        c_dim=3,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=128, channel_max=16, **synthesis),
    ).eval()


def small_discriminator(**kwargs) -> Discriminator:
    return Discriminator(
        c_dim=3, img_resolution=16, img_channels=3, channel_base=128, channel_max=16, **kwargs
    )


def assert_same_network(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------------------
# Snapshot format variants


def test_conditional_fp16_snapshot_round_trips(nvidia_names, tmp_path):
    torch.manual_seed(0)
    G = small_generator(num_fp16_res=2, conv_clamp=256, architecture="resnet")
    D = small_discriminator(num_fp16_res=2, conv_clamp=256, mapping_kwargs=dict(num_layers=1))
    pipe = AugmentPipe(xflip=1, rotate90=1)
    pipe.p.fill_(0.375)
    path = write_snapshot(
        tmp_path / "network-snapshot-000000.pkl",
        dict(
            G=(G, ADA_NETWORKS_SRC, G.init_kwargs),
            D=(D, ADA_NETWORKS_SRC, D.init_kwargs),
            G_ema=(G, ADA_NETWORKS_SRC, G.init_kwargs),
            augment_pipe=(pipe, AUGMENT_SRC, {}),
        ),
        training_set_kwargs=dict(path="x.zip", use_labels=True, resolution=np.int64(16)),
    )
    loaded = load_official_pkl(path)
    for key, original in (("G", G), ("G_ema", G), ("D", D)):
        assert loaded[key].init_kwargs == original.init_kwargs
        assert_same_network(loaded[key], original)
    assert loaded["augment_p"] == 0.375
    assert loaded["training_set_kwargs"] == dict(path="x.zip", use_labels=True, resolution=16)
    z, c = torch.randn(4, 8), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        img = G(z, c, noise_mode="const")
        assert torch.equal(loaded["G_ema"](z, c, noise_mode="const"), img)
        assert torch.equal(loaded["D"](img, c), D(img, c))


def test_stylegan3_repo_stylegan2_networks_get_their_defaults(nvidia_names, tmp_path):
    """stylegan3's networks_stylegan2 takes synthesis arguments flat and clamps at 256 by default."""
    G = small_generator(conv_clamp=256, num_fp16_res=4)
    D = small_discriminator(conv_clamp=256, num_fp16_res=4)
    flat = {k: v for k, v in G.init_kwargs.items() if k != "synthesis_kwargs"}
    flat.update(channel_base=128, channel_max=16, fused_modconv_default="inference_only")
    d_kwargs = dict(c_dim=3, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    path = write_snapshot(
        tmp_path / "sg3repo.pkl",
        dict(
            G=(G, SG3_REPO_STYLEGAN2_SRC, flat),
            D=(D, SG3_REPO_STYLEGAN2_SRC, d_kwargs),
            G_ema=(G, SG3_REPO_STYLEGAN2_SRC, flat),
        ),
        augment_pipe=None,
    )
    loaded = load_official_pkl(path)
    synthesis = loaded["G_ema"].init_kwargs["synthesis_kwargs"]
    assert synthesis["conv_clamp"] == 256 and synthesis["num_fp16_res"] == 4
    assert "fused_modconv_default" not in synthesis
    assert loaded["G_ema"].init_kwargs["mapping_kwargs"]["w_avg_beta"] == 0.998
    assert loaded["D"].init_kwargs["conv_clamp"] == 256
    assert_same_network(loaded["G_ema"], G)
    assert_same_network(loaded["D"], D)
    assert loaded["augment_p"] == 0.0 and loaded["training_set_kwargs"] is None


# --------------------------------------------------------------------------------------------------
# Refusal: nothing from the file runs


class SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_os_system_reduce_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps({"G": SystemCall(f"touch {marker}")}))
    with pytest.raises(PickleRefusedError, match=r"(posix|os)\.system"):
        load_official_pkl(path)
    assert not marker.exists()


def test_cli_refuses_hostile_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps(SystemCall(f"touch {marker}")))
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(path), "--out", str(tmp_path / "G.safetensors")])
    assert exit_info.value.code == 2
    assert "posix.system" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "G.safetensors").exists()


def marker_prelude(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('source ran')\n"


def test_unknown_persistent_class_is_refused_unrun(nvidia_names, tmp_path):
    marker = tmp_path / "ran"
    evil = nn.Linear(2, 2)
    evil_src = module_source("Linear", prelude=marker_prelude(marker))
    path = write_snapshot(tmp_path / "evil.pkl", dict(G=(evil, evil_src, {})))
    with pytest.raises(PickleRefusedError, match=r"<unrecognised module>\.Linear"):
        load_official_pkl(path)
    assert not marker.exists()


def test_network_with_hostile_source_loads_without_running_it(nvidia_names, tmp_path):
    marker = tmp_path / "ran"
    src = marker_prelude(marker) + ADA_NETWORKS_SRC
    G, D = small_generator(), small_discriminator()
    path = write_snapshot(
        tmp_path / "snapshot.pkl",
        dict(G=(G, src, G.init_kwargs), D=(D, src, D.init_kwargs), G_ema=(G, src, G.init_kwargs)),
    )
    loaded = load_official_pkl(path)
    assert_same_network(loaded["G_ema"], G)
    assert not marker.exists()


def test_pickled_storage_goes_through_weights_only_load(tmp_path):
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    torch.save(SystemCall(f"touch {marker}"), inner, _use_new_zipfile_serialization=False)

    class Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (inner.getvalue(),)

    path = tmp_path / "storage.pkl"
    path.write_bytes(pickle.dumps({"G": Storage()}))
    with pytest.raises(PickleRefusedError, match="weights-only"):
        load_official_pkl(path)
    assert not marker.exists()


def test_persistent_ids_are_refused(tmp_path):
    class WithPersistentIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage0" if isinstance(obj, str) and obj == "ref" else None

    buffer = io.BytesIO()
    WithPersistentIds(buffer).dump({"G": "ref"})
    path = tmp_path / "pid.pkl"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(PickleRefusedError, match="persistent id"):
        load_official_pkl(path)


def test_not_a_snapshot_is_a_clear_error(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a snapshot dict"):
        load_official_pkl(path)
    path.write_bytes(pickle.dumps({"G": 1})[:-5])
    with pytest.raises(ValueError, match="not a readable network pickle"):
        load_official_pkl(path)


# --------------------------------------------------------------------------------------------------
# TensorFlow-era pickles, written with TF's variable names and shapes


def random_array(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def tf_network(name: str, func: str, static_kwargs, variables, components=None, version=4, src="") -> Network:
    state = dict(version=version, name=name, static_kwargs=static_kwargs, components=components or {})
    state.update(build_module_src=src, build_func_name=func, variables=list(variables.items()))
    return Network(state)


def tf_generator(
    rng, *, ada: bool, label: int = 0, architecture: str = "skip", extra_kwargs=None, src: str = ""
) -> Network:
    """A 16 px TF G_main + G_mapping + G_synthesis(_stylegan2) with the variables NVIDIA's code makes:
    latent and dlatent 8, 2 mapping layers, fmap_base 64, fmap_max 16."""
    latent, res_log2, fmap_base, fmap_max, mapping_layers = 8, 4, 64, 16, 2

    def nf(stage: int) -> int:
        return min(int(fmap_base / 2**stage), fmap_max)

    def modconv(scope: str, kernel: int, fin: int, fout: int, noise: bool = True) -> dict[str, np.ndarray]:
        layer = {f"{scope}/weight": random_array(rng, kernel, kernel, fin, fout)}
        layer[f"{scope}/bias"] = random_array(rng, fout)
        layer[f"{scope}/mod_weight"] = random_array(rng, latent, fin)
        layer[f"{scope}/mod_bias"] = random_array(rng, fin)
        if noise:
            layer[f"{scope}/noise_strength"] = random_array(rng)
        return layer

    mapping = {}
    if label:
        mapping["LabelEmbed/weight"] = random_array(rng, label, latent)
        mapping["LabelEmbed/bias"] = random_array(rng, latent)
    hidden = latent if ada else 512  # mapping_fmaps: ADA's None = dlatent_size, StyleGAN2's 512
    sizes = [latent + (latent if label else 0)] + [hidden] * (mapping_layers - 1) + [latent]
    for i in range(mapping_layers):
        mapping[f"Dense{i}/weight"] = random_array(rng, sizes[i], sizes[i + 1])
        mapping[f"Dense{i}/bias"] = random_array(rng, sizes[i + 1])

    synthesis = {}
    for i in range(2 * res_log2 - 3):  # one noise input per conv layer
        side = 2 ** ((i + 5) // 2)
        synthesis[f"noise{i}"] = random_array(rng, 1, 1, side, side)
    synthesis["4x4/Const/const"] = random_array(rng, 1, nf(1), 4, 4)
    synthesis |= modconv("4x4/Conv", 3, nf(1), nf(1))
    if architecture == "skip":
        synthesis |= modconv("4x4/ToRGB", 1, nf(1), 3, noise=False)
    for res in range(3, res_log2 + 1):
        r = 2**res
        synthesis |= modconv(f"{r}x{r}/Conv0_up", 3, nf(res - 2), nf(res - 1))
        synthesis |= modconv(f"{r}x{r}/Conv1", 3, nf(res - 1), nf(res - 1))
        if architecture == "skip" or res == res_log2:
            synthesis |= modconv(f"{r}x{r}/ToRGB", 1, nf(res - 1), 3, noise=False)
        if architecture == "resnet":
            synthesis[f"{r}x{r}/Skip/weight"] = random_array(rng, 1, 1, nf(res - 2), nf(res - 1))

    kwargs = dict(resolution=2**res_log2, num_channels=3, label_size=label, latent_size=latent)
    kwargs.update(dlatent_size=latent, mapping_layers=mapping_layers, fmap_base=fmap_base, fmap_max=fmap_max)
    kwargs.update(architecture=architecture, **(extra_kwargs or {}))
    own = {"dlatent_avg": random_array(rng, latent)} | ({} if ada else {"lod": np.float32(0)})
    version = 5 if ada else 4
    components = dict(
        mapping=tf_network("G_mapping", "G_mapping", kwargs, mapping, version=version),
        synthesis=tf_network(
            "G_synthesis",
            "G_synthesis" if ada else "G_synthesis_stylegan2",
            kwargs,
            synthesis,
            version=version,
        ),
    )
    return tf_network("G", "G_main", kwargs, own, components, version, src)


def tf_discriminator(rng, *, ada: bool, label: int = 0, extra_kwargs=None) -> Network:
    """A 16 px TF D_stylegan2 / D_main (resnet) with the variables NVIDIA's code makes."""
    res_log2, fmap_base, fmap_max, mapping_layers = 4, 64, 16, 1

    def nf(stage: int) -> int:
        return min(int(fmap_base / 2**stage), fmap_max)

    def conv(scope: str, kernel: int, fin: int, fout: int, bias: bool = True) -> dict[str, np.ndarray]:
        layer = {f"{scope}/weight": random_array(rng, kernel, kernel, fin, fout)}
        return layer | ({f"{scope}/bias": random_array(rng, fout)} if bias else {})

    r = 2**res_log2
    variables = conv(f"{r}x{r}/FromRGB", 1, 3, nf(res_log2 - 1))
    for res in range(res_log2, 2, -1):
        r = 2**res
        variables |= conv(f"{r}x{r}/Conv0", 3, nf(res - 1), nf(res - 1))
        variables |= conv(f"{r}x{r}/Conv1_down", 3, nf(res - 1), nf(res - 2))
        variables |= conv(f"{r}x{r}/Skip", 1, nf(res - 1), nf(res - 2), bias=False)
    variables |= conv("4x4/Conv", 3, nf(1) + 1, nf(1))
    variables["4x4/Dense0/weight"] = random_array(rng, nf(1) * 16, nf(0))
    variables["4x4/Dense0/bias"] = random_array(rng, nf(0))
    cmap = nf(0)
    if label:
        variables["LabelEmbed/weight"] = random_array(rng, label, cmap)
        variables["LabelEmbed/bias"] = random_array(rng, cmap)
        for i in range(mapping_layers):
            variables[f"Mapping{i}/weight"] = random_array(rng, cmap, cmap)
            variables[f"Mapping{i}/bias"] = random_array(rng, cmap)
    outputs = cmap if label else 1
    variables["Output/weight"] = random_array(rng, nf(0), outputs)
    variables["Output/bias"] = random_array(rng, outputs)
    kwargs = dict(
        resolution=2**res_log2, num_channels=3, label_size=label, fmap_base=fmap_base, fmap_max=fmap_max
    )
    if ada and label:
        kwargs["mapping_layers"] = mapping_layers
    kwargs.update(extra_kwargs or {})
    return tf_network("D", "D_main" if ada else "D_stylegan2", kwargs, variables, version=5 if ada else 4)


def write_tf_pickle(path: Path, G: Network, D: Network, Gs: Network) -> Path:
    path.write_bytes(pickle.dumps((G, D, Gs), protocol=3))
    return path


def tf_variables(net: Network, prefix: str = "") -> dict[str, np.ndarray]:
    found = {prefix + k: v for k, v in net.state["variables"]}
    for name, component in net.state["components"].items():
        found |= tf_variables(component, f"{prefix}{name}/")
    return found


def numpy_state(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in module.state_dict().items()}


def conv_weight(tf_weight: np.ndarray, flip: bool = False) -> np.ndarray:
    """legacy.py: [kh, kw, in, out] -> [out, in, kh, kw]; upsampling convs are flipped (TF transposes)."""
    return (tf_weight[::-1, ::-1] if flip else tf_weight).transpose(3, 2, 0, 1)


def test_tf_stylegan2_config_f_layout(nvidia_names, tmp_path):
    rng = np.random.default_rng(0)
    marker = tmp_path / "ran"
    Gs = tf_generator(rng, ada=False, src=marker_prelude(marker))
    D = tf_discriminator(rng, ada=False)
    loaded = load_official_pkl(write_tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", Gs, D, Gs))
    assert not marker.exists()
    assert loaded["augment_p"] is None and loaded["training_set_kwargs"] is None
    sd, tf = numpy_state(loaded["G_ema"]), tf_variables(Gs)
    expected = {  # legacy.py's conversions, one of each kind
        "mapping.w_avg": tf["dlatent_avg"],
        "mapping.fc0.weight": tf["mapping/Dense0/weight"].T,
        "synthesis.b4.const": tf["synthesis/4x4/Const/const"][0],
        "synthesis.b4.conv1.weight": conv_weight(tf["synthesis/4x4/Conv/weight"]),
        "synthesis.b8.conv0.weight": conv_weight(tf["synthesis/8x8/Conv0_up/weight"], flip=True),
        "synthesis.b16.conv1.affine.bias": tf["synthesis/16x16/Conv1/mod_bias"] + 1,
        "synthesis.b16.torgb.affine.weight": tf["synthesis/16x16/ToRGB/mod_weight"].T,
        "synthesis.b4.conv1.noise_const": tf["synthesis/noise0"][0, 0],
        "synthesis.b8.conv0.noise_const": tf["synthesis/noise1"][0, 0],
        "synthesis.b16.conv1.noise_const": tf["synthesis/noise4"][0, 0],
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(sd[name], value, err_msg=name)
    assert sd["mapping.fc0.weight"].shape == (512, 8)  # StyleGAN2's own default hidden width

    sd, tf = numpy_state(loaded["D"]), tf_variables(D)
    expected = {
        "b16.conv1.weight": conv_weight(tf["16x16/Conv1_down/weight"]),
        "b8.skip.weight": conv_weight(tf["8x8/Skip/weight"]),
        "b4.fc.weight": tf["4x4/Dense0/weight"].T,
        "b4.out.bias": tf["Output/bias"],
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(sd[name], value, err_msg=name)
    assert loaded["D"].init_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 4  # D_stylegan2's default
    with torch.no_grad():
        img = loaded["G_ema"](torch.randn(4, 8), None, noise_mode="const")
        assert img.shape == (4, 3, 16, 16) and torch.isfinite(loaded["D"](img, None)).all()


def test_tf_stylegan2_ada_conditional_fp16_layout(nvidia_names, tmp_path):
    rng = np.random.default_rng(1)
    settings = dict(num_fp16_res=2, conv_clamp=256)
    G = tf_generator(rng, ada=True, label=5, architecture="resnet", extra_kwargs=settings)
    D = tf_discriminator(rng, ada=True, label=5, extra_kwargs=settings)
    loaded = load_official_pkl(write_tf_pickle(tmp_path / "ada-tf.pkl", G, D, G))
    sd, tf = numpy_state(loaded["G"]), tf_variables(G)
    np.testing.assert_array_equal(sd["mapping.embed.weight"], tf["mapping/LabelEmbed/weight"].T)
    np.testing.assert_array_equal(
        sd["synthesis.b16.skip.weight"], conv_weight(tf["synthesis/16x16/Skip/weight"], flip=True)
    )
    np.testing.assert_array_equal(
        numpy_state(loaded["D"])["mapping.fc0.weight"], tf_variables(D)["Mapping0/weight"].T
    )
    assert loaded["G"].init_kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    assert loaded["D"].init_kwargs["num_fp16_res"] == 2
    assert loaded["D"].init_kwargs["epilogue_kwargs"]["mbstd_group_size"] is None  # D_main's default
    c = torch.eye(5)[:2]
    with torch.no_grad():
        img = loaded["G_ema"](torch.randn(2, 8), c, noise_mode="const")
        assert loaded["D"](img, c).shape == (2, 1)


def as_stylegan1(G: Network) -> None:
    G.state["build_func_name"] = "G_style"


def as_config_a_to_d(G: Network) -> None:
    G.state["components"]["synthesis"].state["build_func_name"] = "G_synthesis_stylegan_revised"


def with_labels(G: Network) -> None:
    G.state["static_kwargs"]["label_size"] = 2


def with_progressive_structure(G: Network) -> None:
    G.state["static_kwargs"]["structure"] = "linear"


def with_fmap_decay(G: Network) -> None:
    G.state["static_kwargs"]["fmap_decay"] = 0.5


def with_extra_variable(G: Network) -> None:
    G.state["components"]["mapping"].state["variables"].append(("Extra/weight", np.zeros(1)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (as_stylegan1, "StyleGAN v1 generator"),
        (as_config_a_to_d, "config A-D synthesis"),
        (with_labels, "conditional StyleGAN2"),
        (with_progressive_structure, r"unknown TF network arguments \['structure'\]"),
        (with_fmap_decay, "fmap_decay=0.5 is not supported"),
        (with_extra_variable, r"no place in our network \['mapping/Extra/weight'\]"),
    ],
)
def test_tf_pickles_outside_the_supported_set_are_refused(nvidia_names, tmp_path, change, message):
    rng = np.random.default_rng(2)
    G = tf_generator(rng, ada=False)
    change(G)
    path = write_tf_pickle(tmp_path / "tf.pkl", G, tf_discriminator(rng, ada=False), G)
    with pytest.raises(ValueError, match=message):
        load_official_pkl(path)


# --------------------------------------------------------------------------------------------------
# Command line


def test_cli_import_writes_network_and_provenance(reference, tmp_path):
    out = tmp_path / "G.safetensors"
    main(["import", str(reference / "sg2ada_small.pkl"), "--out", str(out)])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["network"] == "G_ema" and record["class"] == "stylegan.networks_stylegan2.Generator"
    assert record["source"]["path"] == str((reference / "sg2ada_small.pkl").resolve())
    assert len(record["source"]["sha256"]) == 64
    assert record["training_set_kwargs"]["resolution"] == 64
    with np.load(reference / "sg2ada_small_outputs.npz") as ref:
        assert record["augment_p"] == pytest.approx(float(ref["augment_p"]))
        z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
        with torch.no_grad():
            img = load_network(out)(z, c, noise_mode="const")
        assert max_error(img, ref["img"]) < TOL

    out = tmp_path / "G3.safetensors"
    main(["import", str(reference / "sg3_t.pkl"), "--out", str(out), "--network", "G"])
    assert (
        json.loads(out.with_suffix(".json").read_text())["class"]
        == "stylegan.networks_stylegan3.StyleGAN3Generator"
    )
    assert isinstance(load_network(out), StyleGAN3Generator)

    npz, out = reference / "sg2ada_G64_D64.npz", tmp_path / "D.safetensors"
    main(["import", str(npz), "--out", str(out), "--network", "D"])
    record = json.loads((tmp_path / "D.json").read_text())
    assert record["class"] == "stylegan.networks_stylegan2.Discriminator" and record["augment_p"] is None


def test_cli_import_names_a_network_the_file_lacks(reference, tmp_path, capsys):
    out = tmp_path / "D.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(reference / "sg3_t.npz"), "--out", str(out), "--network", "D"])
    assert exit_info.value.code == 2 and "holds no D" in capsys.readouterr().err
    assert not out.exists()
