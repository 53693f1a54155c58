"""StyleGAN2 networks and ops: semantics, fast path == reference path, gradients, serialization.

Ops are checked against independent references: scipy/numpy for FIR resampling, a per-sample loop of
plain convolutions for the modulated convolution, numpy for minibatch stddev.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from stylegan.interop import load_official_npz, save_official_npz
from stylegan.latents import style_mix, truncate
from stylegan.layers import MinibatchStdLayer
from stylegan.networks_stylegan2 import Discriminator, Generator
from stylegan.ops import (
    activation_memory_format,
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    use_impl,
)
from stylegan.serialization import load_network, read_network_metadata, save_network

IMPLS = ("ref", "fast")


def small_generator(c_dim: int = 0, architecture: str = "skip", **synthesis_kwargs) -> Generator:
    torch.manual_seed(1)
    return Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(
            channel_base=128, channel_max=16, conv_clamp=256, architecture=architecture, **synthesis_kwargs
        ),
    )


def small_discriminator(c_dim: int = 0, architecture: str = "resnet", **kwargs) -> Discriminator:
    torch.manual_seed(2)
    return Discriminator(
        c_dim=c_dim,
        img_resolution=16,
        img_channels=3,
        architecture=architecture,
        channel_base=128,
        channel_max=16,
        conv_clamp=256,
        epilogue_kwargs=dict(mbstd_group_size=2),
        **kwargs,
    )


def assert_gradients_close(fast: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    """Same gradients up to float32 rounding, measured against the largest gradient entry (near-zero
    gradients that are sums of cancelling terms carry that absolute rounding error too)."""
    assert fast.keys() == ref.keys()
    scale = max(g.abs().max().item() for g in ref.values())
    for name, expected in ref.items():
        torch.testing.assert_close(fast[name], expected, rtol=1e-4, atol=1e-5 * scale, msg=name)


def randomize_noise_strengths(G: Generator) -> None:
    """Freshly built networks have zero noise strength; give every layer some so noise matters."""
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)


# --------------------------------------------------------------------------------------------------
# Ops against independent references


def upfirdn_numpy(
    x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]
) -> np.ndarray:
    """Zero insertion, padding/cropping, scipy 'valid' convolution, subsampling, per channel."""
    n, c, h, w = x.shape
    xu = np.zeros([n, c, h * up, w * up], x.dtype)
    xu[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    xu = np.pad(xu, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    xu = xu[:, :, max(-py0, 0) : xu.shape[2] - max(-py1, 0), max(-px0, 0) : xu.shape[3] - max(-px1, 0)]
    out = np.stack([[scipy.signal.convolve2d(xu[i, j], f, mode="valid") for j in range(c)] for i in range(n)])
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "up, down, pad",
    [
        (1, 1, (1, 2, 0, 1)),
        (2, 1, (2, 1, 2, 1)),
        (1, 2, (1, 1, 1, 1)),
        (2, 1, (0, 3, 1, 0)),
        (1, 2, (-1, 2, 2, -1)),
    ],
)
def test_upfirdn2d_matches_scipy(impl, up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal([2, 3, 7, 6])
    f = rng.standard_normal([4, 3])  # asymmetric: catches flips and transposes
    out = upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=pad, impl=impl)
    np.testing.assert_allclose(out.numpy(), upfirdn_numpy(x, f, up, down, pad), atol=1e-12)


def test_setup_filter_is_normalised_binomial():
    f = setup_filter([1, 3, 3, 1])
    np.testing.assert_array_equal(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "up, down, kernel", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 2, 1), (2, 1, 1), (1, 1, 1)]
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_conv2d_resample_matches_its_definition(impl, up, down, kernel, memory_format):
    """Definition: zero-stuff, pad once, FIR-filter, convolve ('valid'), FIR-filter, subsample."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 5, kernel, kernel, dtype=torch.float64)
    f = setup_filter().double()
    p = kernel // 2
    if up > 1:
        expected = F.conv2d(
            upfirdn2d(x, f, up=2, padding=[p + 2, p + 1, p + 2, p + 1], gain=4, impl="ref"), w
        )
    elif down > 1:
        expected = upfirdn2d(F.conv2d(F.pad(x, [p + 1] * 4), w), f, down=2, impl="ref")
    else:
        expected = F.conv2d(x, w, padding=p)
    out = conv2d_resample(
        x.contiguous(memory_format=memory_format), w, f=f, up=up, down=down, padding=p, impl=impl
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up, kernel", [(1, 3), (2, 3), (1, 1)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_modulated_conv2d_matches_per_sample_convolution(impl, fused, demodulate, up, kernel, memory_format):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    weight = torch.randn(5, 6, kernel, kernel, dtype=torch.float64)
    styles = torch.randn(3, 6, dtype=torch.float64)
    noise = torch.randn(3, 1, 8 * up, 8 * up, dtype=torch.float64)
    f = setup_filter().double()
    out = modulated_conv2d(
        x.contiguous(memory_format=memory_format),
        weight,
        styles,
        noise=noise,
        up=up,
        padding=kernel // 2,
        resample_filter=f,
        demodulate=demodulate,
        flip_weight=up == 1,
        fused_modconv=fused,
        impl=impl,
    )
    for i in range(3):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        xi, p = x[i : i + 1], kernel // 2
        if up > 1:  # flip_weight=False: a true convolution on the zero-stuffed, filtered image
            xi = upfirdn2d(xi, f, up=2, padding=[p + 2, p + 1, p + 2, p + 1], gain=4, impl="ref")
            expected = F.conv2d(xi, w.flip([2, 3])) + noise[i]
        else:
            expected = F.conv2d(xi, w, padding=p) + noise[i]
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-10)


def test_modulated_conv2d_float16_prenormalisation():
    """The fp16 path rescales weights and styles to avoid overflow; demodulation must cancel that."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 8, 8)
    weight = torch.randn(8, 8, 3, 3) * 100
    styles = torch.randn(2, 8) * 100  # the per-sample weights' squares overflow float16 without it
    expected = modulated_conv2d(x, weight, styles, padding=1, impl="ref")
    for impl in IMPLS:
        for fused in (True, False):
            out = modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused, impl=impl)
            assert out.dtype == torch.float16 and torch.isfinite(out).all()
            torch.testing.assert_close(out.float(), expected, rtol=0, atol=2e-2)


@pytest.mark.parametrize("act", ["linear", "lrelu", "relu"])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_bias_act_fast_equals_ref_including_double_backward(act, clamp):
    torch.manual_seed(0)
    x0, b0 = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    results = []
    for impl in IMPLS:
        x, b = x0.clone().requires_grad_(), b0.clone().requires_grad_()
        y = bias_act(x, b, act=act, gain=0.7, clamp=clamp, impl=impl)
        (gx,) = torch.autograd.grad((y * torch.cos(x)).sum(), [x], create_graph=True)
        ggx, ggb = torch.autograd.grad(gx.square().sum() + gx.sum(), [x, b], allow_unused=True)
        results.append([y, gx, ggx, torch.zeros(3, dtype=torch.float64) if ggb is None else ggb])
    for ref, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    inputs = (torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64))
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradgradcheck(lambda x, b: bias_act(x, b, act=act, clamp=1.0, impl="fast"), inputs)


def test_bias_act_closed_form():
    x = torch.tensor([[-2.0, -0.5, 0.5, 300.0]])
    for impl in IMPLS:
        y = bias_act(x, torch.tensor([0.0, 0.0, 0.0, 0.0]), dim=1, act="lrelu", clamp=256, impl=impl)
        expected = torch.tensor([[-0.4, -0.1, 0.5, 256.0 / 2**0.5]]) * 2**0.5
        expected[0, 3] = 256
        torch.testing.assert_close(y, expected)


def test_minibatch_std_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal([6, 4, 3, 3]).astype(np.float32)
    out = MinibatchStdLayer(group_size=3, num_channels=2)(torch.from_numpy(x)).numpy()
    assert out.shape == (6, 6, 3, 3)
    np.testing.assert_array_equal(out[:, :4], x)
    for i in range(6):
        group = x[i % 2 :: 2]  # samples i, i + N/G, ... form a group
        for f in range(2):
            expected = np.sqrt(group[:, 2 * f : 2 * f + 2].var(axis=0) + 1e-8).mean()
            np.testing.assert_allclose(out[i, 4 + f], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of the group size"):
        MinibatchStdLayer(group_size=4)(torch.zeros(6, 4, 3, 3))


# --------------------------------------------------------------------------------------------------
# Generator and discriminator semantics


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_generator_architectures_fast_equals_ref(architecture):
    G = small_generator(c_dim=3, architecture=architecture).eval()
    randomize_noise_strengths(G)
    z, c = torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        with use_impl("ref"):
            expected = G(z, c, noise_mode="const")
        img = G(z, c, noise_mode="const")
        img_unfused = G(z, c, noise_mode="const", fused_modconv=False)
    assert img.shape == (4, 3, 16, 16) and G.num_ws == 6
    torch.testing.assert_close(img, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(img_unfused, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_discriminator_architectures_fast_equals_ref(architecture):
    D = small_discriminator(c_dim=3, architecture=architecture).eval()
    img, c = torch.randn(4, 3, 16, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        with use_impl("ref"):
            expected = D(img, c)
        logits = D(img, c)
    assert logits.shape == (4, 1)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_labels_change_outputs():
    G, D = small_generator(c_dim=3).eval(), small_discriminator(c_dim=3).eval()
    z = torch.randn(2, 16)
    c0, c1 = torch.eye(3)[[0, 0]], torch.eye(3)[[1, 1]]
    with torch.no_grad():
        img0, img1 = G(z, c0, noise_mode="const"), G(z, c1, noise_mode="const")
        assert (img0 - img1).abs().max() > 1e-3
        assert (D(img0, c0) - D(img0, c1)).abs().max() > 1e-4
    assert hasattr(G.mapping, "embed") and hasattr(D, "mapping")
    with pytest.raises(ValueError, match=r"c must have shape \('N', 3\)"):
        G(z, None)


def test_truncation_semantics():
    G = small_generator()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        z = torch.randn(3, 16)
        ws = G.mapping(z, None)
        assert ws.shape == (3, G.num_ws, 16) and torch.equal(ws[:, 0], ws[:, -1])
        cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=3)
        torch.testing.assert_close(cut[:, :3], G.mapping.w_avg.expand(3, 3, 16))
        torch.testing.assert_close(cut[:, 3:], ws[:, 3:])
        half = G.mapping(z, None, truncation_psi=0.5)
        torch.testing.assert_close(half, (ws + G.mapping.w_avg) / 2)
        assert torch.equal(truncate(ws, G.mapping.w_avg, 1.0, 2), ws)


def test_w_avg_tracks_an_ema_only_when_asked():
    G = small_generator()
    z = torch.randn(8, 16)
    with torch.no_grad():
        before = G.mapping.w_avg.clone()
        G.mapping(z, None)
        assert torch.equal(G.mapping.w_avg, before)
        w = G.mapping(z, None)[:, 0]
        G.mapping(z, None, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, before + (w.mean(0) - before) * (1 - 0.995))


def test_style_mix():
    a, b = torch.zeros(2, 5, 3), torch.ones(2, 5, 3)
    mixed = style_mix(a, b, 2)
    assert torch.equal(mixed[:, :2], a[:, :2]) and torch.equal(mixed[:, 2:], b[:, 2:])
    with pytest.raises(ValueError, match="cutoff_layer"):
        style_mix(a, b, 6)


def test_noise_modes():
    G = small_generator().eval()
    randomize_noise_strengths(G)
    ws = G.mapping(torch.randn(2, 16), None).detach()
    with torch.no_grad():
        const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        rand_a, rand_b = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        none = G.synthesis(ws, noise_mode="none")
        for name, buf in G.named_buffers():
            if name.endswith("noise_const"):
                buf.zero_()
        const_zero = G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert (rand_a - rand_b).abs().max() > 1e-3 and (rand_a - const_a).abs().max() > 1e-3
    torch.testing.assert_close(none, const_zero, rtol=0, atol=1e-6)
    assert "synthesis.b8.conv0.noise_const" in dict(G.named_buffers())
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_fast_formulation_keeps_cpu_feature_maps_channels_last():
    """On CPU the fast formulation runs every block NHWC (no reorders around oneDNN convolutions);
    the reference formulation keeps NVIDIA's layout. Same function either way (tests above)."""
    cpu = torch.device("cpu")
    assert activation_memory_format(False, cpu) == torch.channels_last
    with use_impl("ref"):
        assert activation_memory_format(False, cpu) == torch.contiguous_format
        assert activation_memory_format(True, cpu) == torch.channels_last
    feature_maps = []
    G = small_generator().eval()
    G.synthesis.b16.conv1.register_forward_hook(lambda module, args, out: feature_maps.append(out))
    with torch.no_grad():
        G(torch.randn(2, 16), None)
        with use_impl("ref"):
            G(torch.randn(2, 16), None)
    fast_map, ref_map = feature_maps
    assert fast_map.is_contiguous(memory_format=torch.channels_last) and not fast_map.is_contiguous()
    assert ref_map.is_contiguous()


def test_channels_last_equals_contiguous():
    """fp16_channels_last keeps the top blocks in channels_last (fp32 on CPU): same function."""
    G_plain, D_plain = small_generator(), small_discriminator()
    G_cl = small_generator(num_fp16_res=2, fp16_channels_last=True)
    D_cl = small_discriminator(num_fp16_res=2, block_kwargs=dict(fp16_channels_last=True))
    G_cl.load_state_dict(G_plain.state_dict())
    D_cl.load_state_dict(D_plain.state_dict())
    assert G_cl.synthesis.b16.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    z = torch.randn(4, 16)
    for train in (False, True):
        G_plain.train(train), G_cl.train(train), D_plain.train(train), D_cl.train(train)
        with torch.no_grad():
            img = G_plain(z, None, noise_mode="const")
            torch.testing.assert_close(G_cl(z, None, noise_mode="const"), img, rtol=0, atol=1e-5)
            torch.testing.assert_close(D_cl(img, None), D_plain(img, None), rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 blocks run on CUDA only")
def test_float16_on_cuda_close_to_float32():
    G = small_generator(num_fp16_res=2, fp16_channels_last=True).cuda().eval()
    D = small_discriminator(num_fp16_res=2, block_kwargs=dict(fp16_channels_last=True)).cuda().eval()
    z = torch.randn(4, 16, device="cuda")
    with torch.no_grad():
        img16, img32 = G(z, None, noise_mode="const"), G(z, None, noise_mode="const", force_fp32=True)
        assert img16.dtype == torch.float32
        torch.testing.assert_close(img16, img32, rtol=0, atol=0.05 * img32.abs().max().item())
        torch.testing.assert_close(D(img32, None), D(img32, None, force_fp32=True), rtol=0, atol=0.05)


def test_float16_code_path_close_to_float32(monkeypatch):
    """Exercise the float16 blocks (pre-normalised modulated convs, clamping, channels_last) on CPU,
    whose half-precision kernels stand in for CUDA's: forward and backward stay finite and close."""
    import stylegan.networks_stylegan2 as networks

    G32, D32 = small_generator().eval(), small_discriminator().eval()
    G16 = small_generator(num_fp16_res=2, fp16_channels_last=True).eval()
    D16 = small_discriminator(num_fp16_res=2, block_kwargs=dict(fp16_channels_last=True)).eval()
    G16.load_state_dict(G32.state_dict())
    D16.load_state_dict(D32.state_dict())
    monkeypatch.setattr(
        networks,
        "compute_dtype",
        lambda use_fp16, force_fp32, device: torch.float16 if use_fp16 and not force_fp32 else torch.float32,
    )
    z = torch.randn(4, 16)
    with torch.no_grad():
        img32 = G32(z, None, noise_mode="const")
        for impl in IMPLS:
            with use_impl(impl):
                img16 = G16(z, None, noise_mode="const")
                assert img16.dtype == torch.float32
                torch.testing.assert_close(img16, img32, rtol=0, atol=0.01 * img32.abs().max().item())
                torch.testing.assert_close(D16(img32, None), D32(img32, None), rtol=0, atol=0.01)
    G16.train(), D16.train()
    F.softplus(D16(G16(z, None), None)).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in [*G16.parameters(), *D16.parameters()])


def test_float16_blocks_run_in_float32_on_cpu():
    G = small_generator(num_fp16_res=2)
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    dtypes = []
    G.synthesis.b16.conv1.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    with torch.no_grad():
        img = G(torch.randn(2, 16), None)
    assert dtypes == [torch.float32] and img.dtype == torch.float32


# --------------------------------------------------------------------------------------------------
# Training: gradients and R1


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_reach_every_parameter(impl):
    G, D = small_generator(c_dim=3).train(), small_discriminator(c_dim=3).train()
    z, c = torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]]
    with use_impl(impl):
        F.softplus(D(G(z, c), c)).mean().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_fast_and_ref_give_the_same_training_gradients():
    grads = {}
    for impl in IMPLS:
        G, D = small_generator().train(), small_discriminator().train()
        randomize_noise_strengths(G)
        z = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
        with use_impl(impl):
            F.softplus(D(G(z, None, noise_mode="const"), None)).mean().backward()
        grads[impl] = {n: p.grad for n, p in [*G.named_parameters(), *D.named_parameters()]}
    assert_gradients_close(grads["fast"], grads["ref"])


def test_r1_double_backward_fast_equals_ref():
    grads = {}
    for impl in IMPLS:
        D = small_discriminator().train()
        real = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(4)).requires_grad_()
        with use_impl(impl):
            (r1_grad,) = torch.autograd.grad(D(real, None).sum(), [real], create_graph=True)
            r1_grad.square().sum().backward()
        # Biases influence the input gradient only through piecewise-constant activation slopes, so
        # their R1 gradient is zero (autograd may also leave it None).
        for name, p in D.named_parameters():
            assert p.grad is not None or not name.endswith("weight"), name
        grads[impl] = {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in D.named_parameters()}
        assert all(torch.isfinite(g).all() for g in grads[impl].values())
    assert_gradients_close(grads["fast"], grads["ref"])


def test_path_length_double_backward_fast_equals_ref():
    """Path-length regularisation differentiates G's input gradient: double backward through synthesis."""
    grads = {}
    for impl in IMPLS:
        G = small_generator().train()
        randomize_noise_strengths(G)
        ws = G.mapping(torch.randn(4, 16, generator=torch.Generator().manual_seed(5)), None)
        with use_impl(impl):
            img = G.synthesis(ws, noise_mode="const")
            probe = torch.randn(img.shape, generator=torch.Generator().manual_seed(6))
            (ws_grad,) = torch.autograd.grad((img * probe).sum(), [ws], create_graph=True)
            ws_grad.square().sum().backward()
        grads[impl] = {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in G.named_parameters()}
        assert G.synthesis.b16.conv1.weight.grad.abs().sum() > 0
    assert_gradients_close(grads["fast"], grads["ref"])


def test_freeze_d_turns_the_first_layers_into_buffers():
    D = small_discriminator(block_kwargs=dict(freeze_layers=2))
    params, buffers = dict(D.named_parameters()), dict(D.named_buffers())
    assert "b16.fromrgb.weight" in buffers and "b16.conv0.weight" in buffers
    assert "b16.conv1.weight" in params and "b8.conv0.weight" in params


# --------------------------------------------------------------------------------------------------
# Rebuilding and serialization


def test_init_kwargs_rebuild_the_same_network():
    G, D = small_generator(c_dim=3), small_discriminator(c_dim=3)
    for net in (G, D):
        kwargs = json.loads(json.dumps(net.init_kwargs))
        clone = type(net)(**kwargs)
        assert {k: v.shape for k, v in clone.state_dict().items()} == {
            k: v.shape for k, v in net.state_dict().items()
        }


def test_save_and_load_network_round_trip(tmp_path):
    G, D = small_generator(c_dim=3), small_discriminator(c_dim=3, architecture="skip")
    randomize_noise_strengths(G)
    z, c = torch.randn(2, 16), torch.eye(3)[[0, 2]]
    for net, name in ((G, "G.safetensors"), (D, "D.safetensors")):
        save_network(tmp_path / name, net)
        loaded = load_network(tmp_path / name)
        assert type(loaded) is type(net) and loaded.init_kwargs == net.init_kwargs and not loaded.training
        for key, value in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    assert sorted(os.listdir(tmp_path)) == ["D.safetensors", "G.safetensors"]  # no temporary files left
    G2 = load_network(tmp_path / "G.safetensors")
    with torch.no_grad():
        assert torch.equal(G2.eval()(z, c, noise_mode="const"), G.eval()(z, c, noise_mode="const"))
    key, kwargs = read_network_metadata(tmp_path / "G.safetensors")
    assert key == "stylegan.networks_stylegan2.Generator" and kwargs["c_dim"] == 3


def test_load_network_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a stylegan network file"):
        load_network(tmp_path / "plain.safetensors")
    save_file(
        {"x": torch.zeros(1)},
        tmp_path / "evil.safetensors",
        metadata={"format": "stylegan.network/1", "class": "os.system", "init_kwargs": "{}"},
    )
    with pytest.raises(ValueError, match="unknown network class 'os.system'"):
        load_network(tmp_path / "evil.safetensors")


def test_npz_export_of_a_conditional_network_round_trips(tmp_path):
    G, D = small_generator(c_dim=3), small_discriminator(c_dim=3)
    save_official_npz(tmp_path / "net.npz", G, D)
    G2, D2 = load_official_npz(tmp_path / "net.npz")
    z, c = torch.randn(2, 16), torch.eye(3)[[0, 2]]
    with torch.no_grad():
        assert torch.equal(G2(z, c, noise_mode="const"), G.eval()(z, c, noise_mode="const"))
        img = G2(z, c, noise_mode="const")
        assert torch.equal(D2(img, c), D.eval()(img, c))
    with pytest.raises(ValueError, match="cmap_dim"):
        save_official_npz(tmp_path / "bad.npz", G, small_discriminator(c_dim=3, cmap_dim=5))
