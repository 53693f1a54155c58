"""StyleGAN v1 (seed 000's t-ae/style-gan-pytorch): parity with its outputs, and our networks' semantics.

``../shared/reference/stylegan1_tae_256.npz`` (read in place: 15 MB) holds t-ae's ``Generator`` and
``Discriminator`` state dicts (``G/``, ``D/``), its ``settings.json`` network section (``meta_json``), and
images and D logits computed by t-ae's code at several (level, alpha) points, with its noise fixed.
Configurations the file does not hold (labels, blur, other resampling modes) are pinned below by closed
forms computed here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan import networks_stylegan1
from stylegan.interop.stylegan1_tae import load_stylegan1_tae
from stylegan.networks_stylegan1 import (
    AdaIN,
    Blur,
    StyleGAN1Discriminator,
    StyleGAN1Generator,
    StyleGAN1MappingNetwork,
)
from stylegan.serialization import load_network, save_network

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "stylegan1_tae_256.npz"
TOL = 1e-4


def _meta() -> dict:
    with np.load(REFERENCE) as data:
        return json.loads(bytes(data["meta_json"]).decode())


META = _meta()


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def tae_state(ref: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in ref.items() if k.startswith(prefix)}


@pytest.fixture
def reference_threads():
    """At least two threads, as the reference was computed with: single-threaded oneDNN sums the 1x1
    convolutions on latents in another order, and t-ae's own code then misses its 256 px images by 3e-4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nets(ref):
    return load_stylegan1_tae(
        tae_state(ref, "G/"), tae_state(ref, "D/"), META["settings"], META["label_size"]
    )


def assert_close(actual: torch.Tensor, expected: np.ndarray | torch.Tensor, what: str, tol: float = TOL):
    expected = torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.detach() - expected).abs().max().item()
    assert err < tol, f"{what}: max abs error {err:.2e} >= {tol}"


# --------------------------------------------------------------------------------------------------
# Parity with t-ae's outputs


def test_imported_config(nets, ref):
    G, D = nets
    s = META["settings"]
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.img_channels) == (
        s["z_dim"],
        s["w_dim"],
        0,
        256,
        3,
    )
    assert (G.num_ws, G.mapping.num_layers, G.start_resolution, D.start_resolution) == (14, 7, 4, 4)
    assert (D.c_dim, D.img_resolution, D.img_channels) == (0, 256, 3)
    assert torch.equal(G.mapping.w_avg, torch.from_numpy(ref["G/w_average"]).flatten().float())
    assert not G.training and not D.training


@pytest.mark.parametrize(("level", "alpha"), [tuple(p) for p in META["points"]])
def test_outputs_match_tae(nets, ref, level, alpha, reference_threads):
    G, D = nets
    out = f"out/level{level}_alpha{alpha}"
    c = torch.zeros([ref["in/z"].shape[0], 0])
    with torch.no_grad():
        img = G(
            torch.from_numpy(ref["in/z"]), c, resolution=2 ** (level + 1), alpha=alpha, noise_mode="const"
        )
        assert_close(img, ref[f"{out}/img_train"], f"image at level {level}, alpha {alpha}")
        logits = D(torch.from_numpy(ref[f"{out}/img_train"]), c, alpha=alpha)
        assert_close(logits, ref[f"{out}/D_logits"], f"D logits at level {level}, alpha {alpha}")


def test_checkpoint_files_as_tae_saves_them(ref, tmp_path):
    """t-ae's train_gan.py: ``torch.save(net.state_dict(), '<step>_lv<level>/gen.pth')`` (and disc.pth)."""
    for prefix, name in (("G/", "gen.pth"), ("D/", "disc.pth")):
        torch.save({k: torch.from_numpy(v) for k, v in tae_state(ref, prefix).items()}, tmp_path / name)
    G, D = load_stylegan1_tae(tmp_path / "gen.pth", str(tmp_path / "disc.pth"), META["settings"], 1)
    out = "out/level2_alpha0.5"
    c = torch.zeros([4, 0])
    with torch.no_grad():
        assert_close(
            G(torch.from_numpy(ref["in/z"]), c, 8, 0.5, noise_mode="const"), ref[f"{out}/img_train"], "img"
        )
        assert_close(D(torch.from_numpy(ref[f"{out}/img_train"]), c, 0.5), ref[f"{out}/D_logits"], "logits")

    state = tae_state(ref, "G/")
    del state["synthesis_module.blocks.3.conv1.weight"]
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth.*synthesis_module.blocks.3.conv1.weight"):
        load_stylegan1_tae(tmp_path / "broken.pth", tmp_path / "disc.pth", META["settings"], 1)


def test_state_dict_mismatches_are_listed(ref):
    settings, d_state = META["settings"], tae_state(ref, "D/")
    state = tae_state(ref, "G/")
    del state["latent_transform.latent_transform.4.weight"]
    state["synthesis_module.blocks.2.conv9.weight"] = np.zeros([1], np.float32)
    state["synthesis_module.blocks.1.noise1.noise_scale"] = np.zeros([1, 3, 1, 1], np.float32)
    with pytest.raises(ValueError) as excinfo:
        load_stylegan1_tae(state, d_state, settings, 1)
    message = str(excinfo.value)
    for key in (
        "latent_transform.latent_transform.4.weight",
        "synthesis_module.blocks.2.conv9.weight",
        "synthesis_module.blocks.1.noise1.noise_scale",
    ):
        assert key in message

    # Labels on: the generator lacks its embedding, the discriminator outputs one logit instead of 5.
    with pytest.raises(ValueError, match="label_embed"):
        load_stylegan1_tae(tae_state(ref, "G/"), d_state, dict(settings, use_labels=True), 5)
    with pytest.raises(ValueError, match=r"blocks\.6\.conv3\.weight"):
        load_stylegan1_tae(_with_labels(ref, 5), d_state, dict(settings, use_labels=True), 5)
    # Blur on: t-ae's blur filter buffers are missing.
    with pytest.raises(ValueError, match=r"blocks\.1\.blur\.filter"):
        load_stylegan1_tae(tae_state(ref, "G/"), d_state, dict(settings, use_blur=True), 1)
    # The equalized-lr scale is derived from the configuration and must agree with it.
    state = tae_state(ref, "G/")
    state["synthesis_module.to_rgbs.2.scale"] = np.array(1.0)
    with pytest.raises(ValueError, match=r"to_rgbs\.2\.scale"):
        load_stylegan1_tae(state, d_state, settings, 1)
    with pytest.raises(ValueError, match="use_noise"):
        load_stylegan1_tae(
            tae_state(ref, "G/"), d_state, {k: v for k, v in settings.items() if k != "use_noise"}, 1
        )
    with pytest.raises(ValueError, match="discriminator"):
        load_stylegan1_tae(tae_state(ref, "G/"), tae_state(ref, "G/"), settings, 1)


def _with_labels(ref: dict[str, np.ndarray], label_size: int) -> dict[str, np.ndarray]:
    """The reference generator with a label embedding (the first mapping layer takes 2 z_dim)."""
    state = tae_state(ref, "G/")
    z_dim = META["settings"]["z_dim"]
    rng = np.random.default_rng(0)
    state["latent_transform.label_embed.weight"] = rng.standard_normal([label_size, z_dim]).astype(np.float32)
    first = "latent_transform.latent_transform.0"
    state[f"{first}.weight"] = np.concatenate([state[f"{first}.weight"]] * 2, axis=1)
    state[f"{first}.scale"] = np.array(math.sqrt(2) / math.sqrt(2 * z_dim))
    return state


def test_labels_select_the_embedding_and_the_logit(ref):
    """With labels, G looks up a one-hot label's embedding and normalises it jointly with z; D returns
    the logit of the label."""
    label_size = 3
    settings = dict(META["settings"], use_labels=True)
    d_state = tae_state(ref, "D/")
    last = "blocks.6.conv3"
    d_state[f"{last}.weight"] = np.zeros([label_size, 256, 1, 1], np.float32)
    d_state[f"{last}.bias"] = np.array([10.0, 20.0, 30.0], np.float32)
    G, D = load_stylegan1_tae(_with_labels(ref, label_size), d_state, settings, label_size)
    assert G.c_dim == D.c_dim == label_size

    labels = torch.tensor([2, 0, 1, 2])
    c = F.one_hot(labels, label_size).float()
    img = torch.randn([4, 3, 16, 16])
    assert torch.equal(D(img, c, alpha=0.5), torch.tensor([[30.0], [10.0], [20.0], [30.0]]))

    z = torch.from_numpy(ref["in/z"])
    embed = torch.from_numpy(_with_labels(ref, label_size)["latent_transform.label_embed.weight"])
    x = torch.cat([z, embed[labels]], dim=1).double()
    x = x / (x.square().mean(dim=1, keepdim=True) + settings["epsilon"]).sqrt()
    for idx in range(7):
        layer = getattr(G.mapping, f"fc{idx}")
        x = F.leaky_relu(x @ (layer.weight.double() * layer.weight_gain).T + layer.bias.double(), 0.2)
    assert_close(G.mapping(z, c)[:, 0].double(), x, "ws with labels", tol=1e-5)


def test_without_noise_strengths_must_be_zero(ref):
    """t-ae's use_noise=False (which its code cannot build: ``Parameter.zeros_``) means zero strengths."""
    settings, d_state = dict(META["settings"], use_noise=False), tae_state(ref, "D/")
    state = tae_state(ref, "G/")
    for k in state:
        if k.endswith("noise_scale"):
            state[k] = np.zeros_like(state[k])
    G_free, _ = load_stylegan1_tae(state, d_state, settings, 1)
    G_zero, _ = load_stylegan1_tae(state, d_state, META["settings"], 1)
    assert not any("noise" in k for k in G_free.state_dict())
    z = torch.from_numpy(ref["in/z"])
    with torch.no_grad():
        assert torch.equal(G_free(z, None, 16, 0.5), G_zero(z, None, 16, 0.5, noise_mode="const"))
    with pytest.raises(ValueError, match=r"blocks\.0\.noise1\.noise_scale"):
        load_stylegan1_tae(tae_state(ref, "G/"), d_state, settings, 1)


# --------------------------------------------------------------------------------------------------
# Closed forms of the building blocks


def test_blur_is_the_normalised_121_filter_with_zero_padding():
    impulse = torch.zeros([1, 2, 5, 5])
    impulse[:, :, 2, 2] = 1
    kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert torch.equal(Blur()(impulse)[0, 1, 1:4, 1:4], kernel)
    ones = Blur()(torch.ones([1, 1, 4, 4]))[0, 0]
    assert ones[0, 0].item() == 9 / 16 and ones[0, 1].item() == 12 / 16 and ones[1, 1].item() == 1


def test_adain_is_instance_norm_then_style_scale_and_bias():
    adain = AdaIN(channels=2, w_dim=4)
    w = torch.randn([3, 4])
    x = torch.randn([3, 2, 5, 5]) * 3 + 1
    xd = x.double()
    norm = (xd - xd.mean(dim=[2, 3], keepdim=True)) / (
        xd.var(dim=[2, 3], unbiased=False, keepdim=True) + 1e-8
    ).sqrt()
    scale = (
        w.double() @ adain.affine_scale.weight.double().T / 2 + adain.affine_scale.bias.double()
    )  # gain 1/sqrt(4)
    bias = w.double() @ adain.affine_bias.weight.double().T / 2 + adain.affine_bias.bias.double()
    assert_close(
        adain(x, w).double(), scale[:, :, None, None] * norm + bias[:, :, None, None], "AdaIN", tol=1e-5
    )


def test_mapping_normalises_latents_and_tracks_w_avg():
    mapping = StyleGAN1MappingNetwork(z_dim=8, c_dim=0, w_dim=6, num_ws=4, num_layers=1)
    z = torch.randn([5, 8]) * 4
    zd = z.double() / (z.double().square().mean(dim=1, keepdim=True) + 1e-8).sqrt()
    w = F.leaky_relu(zd @ (mapping.fc0.weight.double() * math.sqrt(2 / 8)).T, 0.2)
    ws = mapping(z, None, update_emas=True)
    assert ws.shape == (5, 4, 6) and torch.equal(ws[:, 0], ws[:, 3])
    assert_close(ws[:, 0].double(), w, "w", tol=1e-5)
    assert_close(mapping.w_avg.double(), 0.005 * w.mean(dim=0), "w_avg", tol=1e-6)
    unnormalised = StyleGAN1MappingNetwork(8, 0, 6, 4, num_layers=1, normalize_latents=False)
    unnormalised.load_state_dict(mapping.state_dict())
    assert not torch.allclose(unnormalised(z, None), ws)


# --------------------------------------------------------------------------------------------------
# Our networks


def small_nets(
    c_dim: int = 0, downsample_mode: str = "bilinear", use_blur: bool = False, **g_kwargs
) -> tuple[StyleGAN1Generator, StyleGAN1Discriminator]:
    """Fresh 32 px networks with every learned strength and bias non-zero."""
    torch.manual_seed(0)
    sizes = dict(
        c_dim=c_dim, img_resolution=32, img_channels=3, channel_base=256, channel_max=16, use_blur=use_blur
    )
    G = StyleGAN1Generator(z_dim=16, w_dim=12, **sizes, **g_kwargs)
    D = StyleGAN1Discriminator(downsample_mode=downsample_mode, **sizes)
    with torch.no_grad():
        for name, p in [*G.named_parameters(), *D.named_parameters()]:
            if name.endswith(("bias", "noise_strength")):
                p.copy_(torch.randn(p.shape) * 0.3)
    return G, D


def test_default_architecture():
    G = StyleGAN1Generator(z_dim=256, c_dim=0, w_dim=256, img_resolution=64, img_channels=3)
    D = StyleGAN1Discriminator(c_dim=0, img_resolution=64, img_channels=3)
    assert G.mapping.num_layers == 8 and G.num_ws == 10 and G.start_resolution == 4
    channels = {res: getattr(G.synthesis, f"b{res}").conv1.weight.shape[0] for res in (4, 8, 16, 32, 64)}
    assert channels == {4: 256, 8: 256, 16: 256, 32: 128, 64: 64}
    assert D.b64.fromrgb.weight.shape[0] == 64 and D.b4.out.weight.shape[0] == 1
    assert not hasattr(networks_stylegan1, "Generator") and not hasattr(networks_stylegan1, "Discriminator")


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_generator_fade_in_starts_from_the_upsampled_lower_resolution(mode):
    G, _ = small_nets(upsample_mode=mode, use_blur=True)
    z = torch.randn([2, 16])
    with torch.no_grad():
        for res in (8, 16, 32):
            lower = G(z, None, resolution=res // 2, noise_mode="const")
            faded = G(z, None, resolution=res, alpha=0, noise_mode="const")
            assert torch.equal(faded, F.interpolate(lower, scale_factor=2, mode=mode))
            grown = G(z, None, resolution=res, alpha=1, noise_mode="const")
            half = G(z, None, resolution=res, alpha=0.5, noise_mode="const")
            assert_close(half, (faded + grown) / 2, "alpha 0.5", tol=1e-5)
    if mode == "nearest":
        assert torch.equal(faded, faded[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_discriminator_fade_in_starts_from_the_downsampled_image():
    """Bilinear downsampling by 2 is a 2x2 average; nearest takes the top-left pixel of each 2x2."""
    img = torch.randn([2, 3, 32, 32])
    _, D = small_nets(downsample_mode="bilinear", use_blur=True)
    with torch.no_grad():
        assert_close(D(img, None, alpha=0), D(F.avg_pool2d(img, 2), None), "bilinear", tol=1e-5)
        assert not torch.allclose(D(img, None, alpha=0.5), D(img, None))
    _, D = small_nets(downsample_mode="nearest")
    with torch.no_grad():
        assert torch.equal(D(img, None, alpha=0), D(img[:, :, ::2, ::2].contiguous(), None))
        assert D(img[:, :, :4, :4], None, alpha=0.3).shape == (2, 1)  # no fade-in at 4x4


def test_truncation_and_noise_modes():
    G, _ = small_nets()
    z = torch.randn([3, 16])
    with torch.no_grad():
        G.mapping(torch.randn([64, 16]), None, update_emas=True)
        ws = G.mapping(z, None)
        assert torch.equal(G.mapping(z, None, truncation_psi=0)[:, 0], G.mapping.w_avg.expand(3, -1))
        cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.equal(cut[:, 2:], ws[:, 2:])
        assert_close(cut[:, :2], G.mapping.w_avg.lerp(ws[:, :2], 0.5), "truncated")
        assert torch.equal(
            G(z, None, truncation_psi=0.5, truncation_cutoff=2, noise_mode="none"),
            G.synthesis(cut, noise_mode="none"),
        )

        const = G(z, None, noise_mode="const")
        assert torch.equal(const, G(z, None, noise_mode="const"))
        assert not torch.allclose(const, G(z, None, noise_mode="none"))
        assert not torch.allclose(G(z, None), G(z, None))
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="fixed")


def test_shapes_at_every_resolution_and_bad_inputs():
    G, D = small_nets(c_dim=2)
    z, c = torch.randn([2, 16]), torch.eye(2)
    with torch.no_grad():
        assert G(z, c).shape == (2, 3, 32, 32)  # resolution None: fully grown
        for res in (4, 8, 16, 32):
            img = G(z, c, resolution=res, alpha=0.5)
            assert img.shape == (2, 3, res, res)
            assert D(img, c, alpha=0.5).shape == (2, 1)
    with pytest.raises(ValueError, match="resolution"):
        G(z, c, resolution=12)
    with pytest.raises(ValueError, match="resolution"):
        D(torch.randn([2, 3, 64, 64]), c)
    with pytest.raises(ValueError, match="alpha"):
        G(z, c, alpha=1.5)
    with pytest.raises(ValueError, match="c must have shape"):
        D(torch.randn([2, 3, 8, 8]), None)
    with pytest.raises(ValueError, match="img must have shape"):
        D(torch.randn([2, 1, 8, 8]), c)
    with pytest.raises(ValueError, match="upsample_mode"):
        StyleGAN1Generator(16, 0, 12, 32, 3, upsample_mode="linear")


def test_gradients_reach_every_parameter_in_use():
    G, D = small_nets(c_dim=2, use_blur=True)
    z, c = torch.randn([2, 16]), torch.eye(2)
    D(G(z, c, alpha=0.5), c, alpha=0.5).sum().backward()
    unused = {"synthesis.b4.torgb", "synthesis.b8.torgb", "b8.fromrgb", "b4.fromrgb"}  # outside the fade-in
    for name, p in [*G.named_parameters(), *(("D." + n, p) for n, p in D.named_parameters())]:
        used = name.rsplit(".", 1)[0].removeprefix("D.") not in unused
        assert (p.grad is not None and p.grad.abs().sum() > 0) == used, name


def test_save_and_load_round_trip(tmp_path):
    G, D = small_nets(
        c_dim=2, upsample_mode="nearest", downsample_mode="nearest", use_blur=True, mapping_layers=3
    )
    save_network(tmp_path / "G.safetensors", G)
    save_network(tmp_path / "D.safetensors", D)
    G2, D2 = load_network(tmp_path / "G.safetensors"), load_network(tmp_path / "D.safetensors")
    assert type(G2) is StyleGAN1Generator and type(D2) is StyleGAN1Discriminator
    assert G2.init_kwargs == G.init_kwargs and D2.init_kwargs == D.init_kwargs
    assert json.loads(json.dumps(G.init_kwargs)) == G.init_kwargs
    z, c = torch.randn([2, 16]), torch.eye(2)
    with torch.no_grad():
        img = G(z, c, resolution=16, alpha=0.3, noise_mode="const")
        assert torch.equal(G2(z, c, resolution=16, alpha=0.3, noise_mode="const"), img)
        assert torch.equal(D2(img, c, alpha=0.3), D(img, c, alpha=0.3))
