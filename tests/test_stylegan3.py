"""StyleGAN3: parity with NVIDIA's generators, the filtered leaky ReLU, and the network's contracts.

``tests/reference/sg3_{t,r}.npz`` (copies of ``shared/reference``) hold random official config T and
R generators (64 px) written by NVlabs/stylegan3, with inputs (``in/``) and official outputs (``out/``):
truncated ws, images, and images rendered with ``G.synthesis.input.transform = in/input_transform_inv``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan.interop import load_official_npz
from stylegan.networks_stylegan3 import StyleGAN3Generator, design_lowpass_filter
from stylegan.ops import IMPLS, use_impl
from stylegan.ops.filtered_lrelu import filtered_lrelu
from stylegan.serialization import load_network, read_network_metadata, save_network

REFERENCE = Path(__file__).resolve().parent / "reference"
TOL = 1e-4


@pytest.fixture(scope="module", params=["t", "r"])
def official(request):
    path = REFERENCE / f"sg3_{request.param}.npz"
    with np.load(path) as data:
        ref = {k: data[k] for k in data.files}
    G, D = load_official_npz(path)
    return request.param, ref, G, D


def assert_close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    err = (actual.detach() - torch.from_numpy(expected)).abs().max().item()
    assert err < TOL, f"{what}: max abs error {err:.2e} >= {TOL}"


def small_generator(**kwargs) -> StyleGAN3Generator:
    config = dict(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8,
        num_layers=4, num_critical=1, margin_size=4,
    )  # fmt: skip
    return StyleGAN3Generator(**{**config, **kwargs})


# --------------------------------------------------------------------------------------------------
# Parity with NVIDIA


def test_npz_gives_a_stylegan3_generator_and_no_discriminator(official):
    config, ref, G, D = official
    meta = json.loads(bytes(ref["meta_json"]))["G"]
    assert isinstance(G, StyleGAN3Generator) and D is None and not G.training
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws) == (
        meta["z_dim"],
        meta["c_dim"],
        meta["w_dim"],
        meta["num_ws"],
    )
    assert (G.img_resolution, G.img_channels) == (meta["img_resolution"], meta["img_channels"])
    radial = [name for name in G.synthesis.layer_names if getattr(G.synthesis, name).down_radial]
    assert bool(radial) == (config == "r")


def test_outputs_match_official(official):
    _, ref, G, _ = official
    ws = G.mapping(torch.from_numpy(ref["in/z"]), None, truncation_psi=0.7)
    assert_close(ws, ref["out/ws_trunc_psi0.7"], "ws psi=0.7")
    with torch.no_grad():
        assert_close(G.synthesis(ws), ref["out/img"], "img")
        G.synthesis.input.transform.copy_(torch.from_numpy(ref["in/input_transform_inv"]))
        try:
            assert_close(G.synthesis(ws), ref["out/img_translated"], "translated img")
        finally:
            G.synthesis.input.transform.copy_(torch.eye(3))


def test_reference_formulation_matches_official(official):
    _, ref, G, _ = official
    with torch.no_grad(), use_impl("ref"):
        img = G(torch.from_numpy(ref["in/z"][:1]), None, truncation_psi=0.7)
    assert_close(img, ref["out/img"][:1], "img")


def test_layer_schedule_is_nvidias(official):
    """Resampling factors, filter sizes and paddings of NVIDIA's 64 px configs (read off its code)."""
    config, _, G, _ = official
    layers = [getattr(G.synthesis, name) for name in G.synthesis.layer_names]
    assert [layer.up_factor for layer in layers] == [2, 2, 2, 2, 4, 2, 2, 2, 4, 2, 2, 2, 2, 2, 1]
    assert [layer.down_factor for layer in layers] == [2] * 14 + [1]
    assert layers[-1].up_filter is None and layers[-1].down_filter is None
    if config == "t":
        assert layers[0].padding == [9, 8, 9, 8] and layers[4].padding == [-6, -9, -6, -9]
        assert layers[13].padding == [-11, -12, -11, -12]
    else:
        assert layers[0].padding == [11, 10, 11, 10] and layers[8].padding == [-2, -5, -2, -5]
        assert [layer.down_filter.ndim for layer in layers[:-1]] == [2] * 12 + [1, 1]


def test_designed_filters_equal_the_official_buffers(official):
    """The importer loads the file's filters; the constructor must design the same ones."""
    _, ref, G, _ = official
    fresh = StyleGAN3Generator(**G.init_kwargs).state_dict()
    for name, value in fresh.items():
        if name.endswith("_filter"):
            np.testing.assert_allclose(value.numpy(), ref[f"G/{name}"], rtol=0, atol=1e-7, err_msg=name)


def test_npz_whose_config_does_not_describe_the_weights_is_refused(tmp_path):
    with np.load(REFERENCE / "sg3_t.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["meta_json"]))
    meta["G"]["first_cutoff"] = 3  # same shapes, other filters
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="up_filter|down_filter"):
        load_official_npz(tmp_path / "bad.npz")
    meta["G"] = {**meta["G"], "first_cutoff": 2, "bogus": 1}
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bogus"):
        load_official_npz(tmp_path / "bad.npz")


# --------------------------------------------------------------------------------------------------
# Filtered leaky ReLU against its definition


def direct_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The definition, literally, in float64 numpy: zero insertion, padding, 2-D convolution with the
    (outer product of the) up filter, leaky ReLU, 2-D convolution with the down filter, subsampling."""

    def as_2d(f):
        f = np.ones([1, 1]) if f is None else f.numpy().astype(np.float64)
        return np.outer(f, f) if f.ndim == 1 else f

    def convolve_valid(img, f):
        f = f if flip_filter else f[::-1, ::-1]  # correlation with the flipped filter = convolution
        fh, fw = f.shape
        out = np.zeros(img.shape[:2] + (img.shape[2] - fh + 1, img.shape[3] - fw + 1))
        for i in range(fh):
            for j in range(fw):
                out += f[i, j] * img[:, :, i : i + out.shape[2], j : j + out.shape[3]]
        return out

    x = x.numpy().astype(np.float64) + b.numpy().astype(np.float64)[None, :, None, None]
    n, c, h, w = x.shape
    stuffed = np.zeros([n, c, h * up, w * up])
    stuffed[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = padding
    padded = np.pad(stuffed, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    padded = padded[
        :, :, max(-py0, 0) : padded.shape[2] - max(-py1, 0), max(-px0, 0) : padded.shape[3] - max(-px1, 0)
    ]
    y = convolve_valid(padded, as_2d(fu)) * up**2
    y = np.where(y >= 0, y, y * slope) * gain
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return convolve_valid(y, as_2d(fd))[:, :, ::down, ::down]


FILTERED_LRELU_CASES = [
    # up, down, up taps, down taps (2 = 2-D), padding, clamp, flip_filter
    (2, 2, 12, 12, [9, 8, 9, 8], None, False),  # config T, same sampling rate
    (4, 2, 24, 12, [-6, -9, -4, -7], 0.5, False),  # rising sampling rate, cropping
    (2, 2, 12, (12, 12), [11, 10, 11, 10], None, True),  # config R: radial down filter
    (1, 1, None, None, [1, 0, 0, 2], 0.8, False),  # ToRGB-like: no filters
    (3, 1, 5, 4, [2, 3, 1, 0], None, False),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("up, down, up_taps, down_taps, padding, clamp, flip_filter", FILTERED_LRELU_CASES)
def test_filtered_lrelu_matches_its_definition(
    up, down, up_taps, down_taps, padding, clamp, flip_filter, impl
):
    gen = torch.Generator().manual_seed(0)

    def taps(shape):
        return None if shape is None else torch.rand(shape, generator=gen) + 0.1

    x = torch.randn([2, 3, 12, 14], generator=gen)
    b = torch.randn([3], generator=gen)
    fu, fd = taps(up_taps), taps(down_taps)
    kwargs = dict(
        up=up, down=down, padding=padding, gain=math.sqrt(2), slope=0.2, clamp=clamp, flip_filter=flip_filter
    )
    expected = direct_filtered_lrelu(x, fu, fd, b, **kwargs)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        with use_impl(impl):
            y = filtered_lrelu(x.to(memory_format=memory_format), fu, fd, b, **kwargs)
        assert y.shape == expected.shape and y.dtype == x.dtype
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_filtered_lrelu_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([1, 1, 4, 4], generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([1], generator=gen, dtype=torch.float64, requires_grad=True)
    fu, fd = design_lowpass_filter(4, 1, 1, 4), design_lowpass_filter(4, 1, 1, 4, radial=True)

    def op(x, b):
        return filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=2, clamp=1.0)

    torch.autograd.gradcheck(op, (x, b))
    torch.autograd.gradgradcheck(op, (x, b))


def test_filtered_lrelu_rejects_bad_arguments():
    x = torch.zeros([1, 1, 4, 4])
    with pytest.raises(ValueError, match="no output pixels"):
        filtered_lrelu(x, torch.ones(12), None, up=2, padding=-4)
    with pytest.raises(ValueError, match="FIR filter"):
        filtered_lrelu(x, torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="up and down"):
        filtered_lrelu(x, down=0)


# --------------------------------------------------------------------------------------------------
# The network's contracts


def test_official_call_signatures_and_conditioning():
    G = small_generator(c_dim=4).eval()
    z, c = torch.randn(3, 8), torch.eye(4)[:3]
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
        assert ws.shape == (3, G.num_ws, G.w_dim) and G.num_ws == 4 + 2
        assert torch.equal(ws[:, 2:], G.mapping(z, c)[:, 2:])
        img = G.synthesis(ws, update_emas=False)
        assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32
        assert torch.equal(img, G(z, c, truncation_psi=0.5, truncation_cutoff=2))
        assert not torch.allclose(img, G(z, c.roll(1, dims=0), truncation_psi=0.5, truncation_cutoff=2))
    with pytest.raises(ValueError, match="ws"):
        G.synthesis(ws[:, 1:])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_update_emas_tracks_w_avg_and_input_magnitudes():
    G = small_generator(magnitude_ema_beta=0.9)
    assert G.mapping.num_layers == 2 and G.mapping.w_avg_beta == 0.998
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    z = torch.randn(4, 8)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G(z, None)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        features = G.synthesis.input(G.mapping(z, None)[:, 0])
    G(z, None, update_emas=True)
    expected = features.square().mean().lerp(torch.tensor(1.0), 0.9)
    torch.testing.assert_close(layer.magnitude_ema, expected)
    assert not torch.equal(G.mapping.w_avg, before["mapping.w_avg"])


def test_gradients_reach_every_parameter_and_path_length_double_backward():
    G = small_generator(c_dim=2).train()
    z, c = torch.randn(2, 8), torch.eye(2)
    G(z, c).square().mean().backward()
    assert [name for name, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    ws = G.mapping(z, c).detach().requires_grad_(True)
    img = G.synthesis(ws)
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def test_float16_layers_run_in_float32_on_cpu():
    G = small_generator(num_fp16_res=2).eval()
    assert any(getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names)
    dtypes = []
    for name in G.synthesis.layer_names:
        getattr(G.synthesis, name).register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(G(z, None), G(z, None, force_fp32=True))
    assert set(dtypes) == {torch.float32}


def test_float16_code_path_close_to_float32(monkeypatch):
    """The float16 layers on CPU's half-precision kernels, standing in for CUDA's."""
    import stylegan.networks_stylegan3 as networks

    G = small_generator(num_fp16_res=2).eval()
    z = torch.randn(2, 8)
    with torch.no_grad():
        img32 = G(z, None)
        monkeypatch.setattr(
            networks,
            "compute_dtype",
            lambda use_fp16, force_fp32, device: (
                torch.float16 if use_fp16 and not force_fp32 else torch.float32
            ),
        )
        img16 = G(z, None)
    assert img16.dtype == torch.float32
    torch.testing.assert_close(img16, img32, rtol=0, atol=0.02 * img32.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 layers run on CUDA only")
def test_float16_on_cuda_close_to_float32():
    G = small_generator(num_fp16_res=2).cuda().eval()
    z = torch.randn(2, 8, device="cuda")
    with torch.no_grad():
        img16, img32 = G(z, None), G(z, None, force_fp32=True)
    assert img16.dtype == torch.float32
    torch.testing.assert_close(img16, img32, rtol=0, atol=0.02 * img32.abs().max().item())


def test_save_and_load_network_round_trip(official, tmp_path):
    _, ref, G, _ = official
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    key, init_kwargs = read_network_metadata(path)
    assert key == "stylegan.networks_stylegan3.StyleGAN3Generator" and init_kwargs == G.init_kwargs
    G2 = load_network(path)
    assert isinstance(G2, StyleGAN3Generator)
    ws = G.mapping(torch.from_numpy(ref["in/z"][:1]), None)
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws), G.synthesis(ws))


def test_same_seed_same_initial_weights():
    torch.manual_seed(3)
    a = small_generator().state_dict()
    torch.manual_seed(3)
    b = small_generator().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    affine = small_generator().synthesis.input.affine
    assert not affine.weight.any() and affine.bias.tolist() == [1, 0, 0, 0]


def test_input_transform_translates_the_fourier_features():
    """``transform`` is the inverse map of image coordinates: translating it by ``-t`` shifts the
    features by ``t`` image widths (here one pixel at the input's sampling rate)."""
    G = small_generator().eval()
    inp = G.synthesis.input
    w = torch.randn(2, 8)
    with torch.no_grad():
        x = inp(w)
        inp.transform[0, 2] = -1 / inp.sampling_rate
        shifted = inp(w)
    torch.testing.assert_close(shifted[..., 1:], x[..., :-1], rtol=0, atol=1e-5)
    assert F.mse_loss(shifted, x) > 1e-3
