"""Parity with NVIDIA's StyleGAN2-ADA: a random official network and its outputs from the official code.

``tests/reference/sg2ada_G64_D64.npz`` (a copy of ``shared/reference``) holds the official G and D
weights (``G/``, ``D/``), their config (``meta_json``), inputs (``in/``) and the official outputs
(``out/``): noise_mode='const', fp32, unclamped images, ``in/ws_mixed`` takes layers >= ``mix_at``
from the next row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan.interop import (
    discriminator_from_official,
    export_official_state_dict,
    generator_from_official,
    load_official_npz,
    official_state_dict_to_ours,
    save_official_npz,
)
from stylegan.latents import style_mix
from stylegan.ops import use_impl

REFERENCE = Path(__file__).resolve().parent / "reference" / "sg2ada_G64_D64.npz"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def meta(ref) -> dict:
    return json.loads(bytes(ref["meta_json"]).decode())


@pytest.fixture(scope="module")
def nets():
    return load_official_npz(REFERENCE)


def t(ref: dict[str, np.ndarray], key: str) -> torch.Tensor:
    return torch.from_numpy(ref[key])


def assert_close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    err = (actual.detach() - torch.from_numpy(expected)).abs().max().item()
    assert err < TOL, f"{what}: max abs error {err:.2e} >= {TOL}"


def test_loaded_config_matches_meta(nets, meta):
    G, D = nets
    g = meta["G"]
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.img_channels, G.num_ws) == (
        g["z_dim"],
        g["w_dim"],
        g["c_dim"],
        g["img_resolution"],
        g["img_channels"],
        g["num_ws"],
    )
    assert G.mapping.num_layers == g["mapping_layers"]
    assert D.b4.mbstd.group_size == meta["D"]["mbstd_group_size"]
    assert D.img_resolution == meta["D"]["img_resolution"]


@pytest.mark.parametrize("impl", ["fast", "ref"])
def test_mapping_matches_official(nets, ref, impl):
    G, _ = nets
    with torch.no_grad(), use_impl(impl):
        assert_close(G.mapping(t(ref, "in/z"), t(ref, "in/c")), ref["out/ws"], "ws")
        ws = G.mapping(t(ref, "in/z"), t(ref, "in/c"), truncation_psi=0.7, truncation_cutoff=None)
        assert_close(ws, ref["out/ws_trunc_psi0.7"], "ws psi=0.7")


@pytest.mark.parametrize("impl", ["fast", "ref"])
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_images_match_official(nets, ref, impl, fused_modconv):
    G, _ = nets
    z, c = t(ref, "in/z"), t(ref, "in/c")
    with torch.no_grad(), use_impl(impl):
        img = G(z, c, noise_mode="const", fused_modconv=fused_modconv)
        assert_close(img, ref["out/img"], "img")
        img = G(z, c, truncation_psi=0.7, noise_mode="const", fused_modconv=fused_modconv)
        assert_close(img, ref["out/img_trunc_psi0.7"], "img psi=0.7")
        img = G.synthesis(t(ref, "in/ws_mixed"), noise_mode="const", fused_modconv=fused_modconv)
        assert_close(img, ref["out/img_mixed"], "img from mixed ws")


@pytest.mark.parametrize("impl", ["fast", "ref"])
def test_discriminator_matches_official(nets, ref, impl):
    _, D = nets
    with torch.no_grad(), use_impl(impl):
        assert_close(D(t(ref, "out/img"), t(ref, "in/c")), ref["out/D_logits"], "D logits")


def test_style_mix_matches_reference_semantics(ref, meta):
    ws = t(ref, "out/ws")
    mixed = style_mix(ws, ws.roll(-1, dims=0), meta["mix_at"])
    assert_close(mixed, ref["in/ws_mixed"], "mixed ws")


def test_npz_round_trip_is_identical(nets, ref, meta, tmp_path):
    G, D = nets
    path = tmp_path / "exported.npz"
    save_official_npz(path, G, D)
    with np.load(path) as out:
        exported = {k: out[k] for k in out.files}
    weight_keys = sorted(k for k in ref if k.startswith(("G/", "D/")))
    assert sorted(k for k in exported if k != "meta_json") == weight_keys
    for k in weight_keys:
        assert exported[k].dtype == ref[k].dtype and np.array_equal(exported[k], ref[k]), k
    exported_meta = json.loads(bytes(exported["meta_json"]).decode())
    assert exported_meta["G"] == meta["G"]
    assert exported_meta["D"] == meta["D"]

    G2, D2 = load_official_npz(path)
    with torch.no_grad():
        assert torch.equal(
            G2(t(ref, "in/z"), t(ref, "in/c"), noise_mode="const"),
            G(t(ref, "in/z"), t(ref, "in/c"), noise_mode="const"),
        )
        assert torch.equal(D2(t(ref, "out/img"), t(ref, "in/c")), D(t(ref, "out/img"), t(ref, "in/c")))


def test_official_state_dict_with_official_init_kwargs(ref, meta):
    """How users bring an official pickle's networks in: its state dict and its init_kwargs."""
    g, d = meta["G"], meta["D"]
    g_state = {k[2:]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("G/")}
    d_state = {k[2:]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("D/")}
    g_kwargs = {
        "class_name": "training.networks.Generator",
        "z_dim": g["z_dim"],
        "c_dim": g["c_dim"],
        "w_dim": g["w_dim"],
        "img_resolution": g["img_resolution"],
        "img_channels": g["img_channels"],
        "mapping_kwargs": {"num_layers": g["mapping_layers"]},
        "synthesis_kwargs": {
            "channel_base": g["channel_base"],
            "channel_max": g["channel_max"],
            "num_fp16_res": 2,
            "conv_clamp": g["conv_clamp"],
        },
    }
    d_kwargs = {
        "class_name": "training.networks.Discriminator",
        "c_dim": d["c_dim"],
        "img_resolution": d["img_resolution"],
        "img_channels": 3,
        "channel_base": d["channel_base"],
        "channel_max": d["channel_max"],
        "num_fp16_res": 2,
        "conv_clamp": d["conv_clamp"],
        "block_kwargs": {},
        "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": d["mbstd_group_size"]},
    }
    G = generator_from_official(g_state, g_kwargs)
    D = discriminator_from_official(d_state, d_kwargs)
    with torch.no_grad():
        assert_close(G(t(ref, "in/z"), t(ref, "in/c"), noise_mode="const"), ref["out/img"], "img")
        assert_close(D(t(ref, "out/img"), t(ref, "in/c")), ref["out/D_logits"], "D logits")
    exported = export_official_state_dict(G)
    assert all(np.array_equal(exported[k], g_state[k].numpy()) for k in g_state)


def test_bad_official_state_dicts_are_named(nets, ref):
    G, _ = nets
    state = {k[2:]: v for k, v in ref.items() if k.startswith("G/")}
    del state["mapping.fc0.weight"]
    state["mapping.fc9.weight"] = np.zeros([1])
    state["synthesis.b8.conv0.weight"] = np.zeros([3, 3, 3, 3], np.float32)
    with pytest.raises(ValueError, match="mapping.fc0.weight") as excinfo:
        official_state_dict_to_ours(G, state, source="my.pkl")
    message = str(excinfo.value)
    assert "my.pkl" in message and "mapping.fc9.weight" in message and "synthesis.b8.conv0.weight" in message

    state = {k[2:]: v.copy() for k, v in ref.items() if k.startswith("G/")}
    state["synthesis.b8.resample_filter"][:] = 1
    with pytest.raises(ValueError, match="synthesis.b8.resample_filter"):
        official_state_dict_to_ours(G, state)

    with pytest.raises(ValueError, match="init_kwargs"):
        generator_from_official(
            state, {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3, "bogus": 1}
        )


def test_bad_npz_is_named(tmp_path, ref, meta):
    broken = dict(ref)
    bad_meta = {"G": {k: v for k, v in meta["G"].items() if k != "channel_base"}, "D": meta["D"]}
    broken["meta_json"] = np.frombuffer(json.dumps(bad_meta).encode(), dtype=np.uint8)
    path = tmp_path / "broken.npz"
    np.savez(path, **broken)
    with pytest.raises(ValueError, match="channel_base"):
        load_official_npz(path)

    del broken["meta_json"]
    np.savez(path, **broken)
    with pytest.raises(ValueError, match="meta_json"):
        load_official_npz(path)
