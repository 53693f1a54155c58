"""ProGAN networks and the import of facebookresearch/pytorch_GAN_zoo's ``GNet``/``DNet``.

``tests/reference/progan_zoo.npz`` (a copy of ``shared/reference``) holds a zoo network grown to 64 px:
its weights (``G/``, ``D/``), latents (``in/z``) and, at three of the zoo's alphas (weight of the old
path, ours = 1 - zoo's), G's images and D's logits on them, all computed by the zoo's own code.
The other configurations' numbers below were also computed by the zoo's own code, on the weights that
:func:`zoo_state_dicts` draws.
"""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan.interop.progan_zoo import load_progan_zoo
from stylegan.networks_progan import ProGANDiscriminator, ProGANGenerator
from stylegan.serialization import load_network, save_network

REFERENCE = Path(__file__).resolve().parent / "reference" / "progan_zoo.npz"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def states(ref) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return (
        {k[2:]: v for k, v in ref.items() if k.startswith("G/")},
        {k[2:]: v for k, v in ref.items() if k.startswith("D/")},
    )


@pytest.fixture(scope="module")
def nets(states):
    return load_progan_zoo(*states)


def max_error(actual: torch.Tensor, expected: np.ndarray | list[float]) -> float:
    expected = torch.as_tensor(np.asarray(expected, np.float32))
    return (actual.detach().flatten() - expected.flatten()).abs().max().item()


def no_labels(n: int) -> torch.Tensor:
    return torch.zeros([n, 0])


# --------------------------------------------------------------------------------------------------
# The reference file


def test_import_reads_the_config_from_the_shapes(nets, ref):
    G, D = nets
    meta = json.loads(bytes(ref["meta_json"]))
    cfg = meta["config"]
    channels = [cfg["depthScale0"], *cfg["depths"]]
    assert (G.z_dim, G.c_dim, G.img_resolution, G.img_channels) == (cfg["dimLatent"], 0, 64, cfg["dimOutput"])
    assert (D.c_dim, D.img_resolution, D.img_channels) == (0, meta["resolution"], cfg["dimOutput"])
    assert G.init_kwargs["channels"] == channels and D.init_kwargs["channels"] == channels
    assert D.init_kwargs["mbstd_group_size"] == 4
    assert G.start_resolution == D.start_resolution == 4
    assert not any(hasattr(G, name) for name in ("mapping", "synthesis", "w_dim"))


@pytest.mark.parametrize("zoo_alpha", [0.0, 0.3, 1.0])
def test_outputs_match_the_zoo(nets, ref, zoo_alpha):
    G, D = nets
    out = f"out/alpha{zoo_alpha}"
    z = torch.from_numpy(ref["in/z"])
    with torch.no_grad():
        img = G(z, no_labels(len(z)), resolution=64, alpha=1 - zoo_alpha)
        assert max_error(img, ref[f"{out}/img"]) < TOL
        logits = D(torch.from_numpy(ref[f"{out}/img"]), no_labels(len(z)), alpha=1 - zoo_alpha)
        assert logits.shape == (len(z), 1)
        assert max_error(logits, ref[f"{out}/D_logits"]) < TOL


# --------------------------------------------------------------------------------------------------
# Other configurations


def zoo_state_dicts(latent, depth0, depths, out, mbstd, decision, seed, scale):
    """Random zoo ``GNet``/``DNet`` state dicts, named and shaped as the zoo's ``addScale`` builds them."""
    rng = np.random.default_rng(seed)
    g = {"formatLayer": (16 * depth0, latent), "groupScale0.0": (depth0, depth0, 3, 3)}
    g["toRGBLayers.0"] = (out, depth0, 1, 1)
    d = {"fromRGBLayers.0": (depth0, out, 1, 1), "groupScaleZero.0": (depth0, depth0 + mbstd, 3, 3)}
    d |= {"groupScaleZero.1": (depth0, 16 * depth0), "decisionLayer": (decision, depth0)}
    last = depth0
    for i, new in enumerate(depths):
        g |= {f"scaleLayers.{i}.0": (new, last, 3, 3), f"scaleLayers.{i}.1": (new, new, 3, 3)}
        g[f"toRGBLayers.{i + 1}"] = (out, new, 1, 1)
        d |= {f"scaleLayers.{i}.0": (new, new, 3, 3), f"scaleLayers.{i}.1": (last, new, 3, 3)}
        d[f"fromRGBLayers.{i + 1}"] = (new, out, 1, 1)
        last = new

    def fill(layers):
        return {
            f"{name}.module.{leaf}": (
                scale * rng.standard_normal(shape if leaf == "weight" else shape[:1])
            ).astype(np.float32)
            for name, shape in layers.items()
            for leaf in ("weight", "bias")
        }

    return fill(g), fill(d), rng


# name: (config, batch size, import options,
#        [(resolution, zoo alpha, G samples, D logits, D logits of the first sample alone)])
ZOO_CASES = {
    "grayscale, no mbstd": (
        dict(latent=6, depth0=8, depths=[8, 4], out=1, mbstd=0, decision=1, seed=1, scale=1.0),
        3,
        {},
        [
            (16, 0.3, [0.131624, 0.832382, -0.942363, 1.040408, -0.729397, -0.965268, 0.644044, 0.926583],
             [-0.028559, -0.010423, -0.032459], [-0.028559]),
            (8, 0.0, [0.907175, 0.46642, 0.487964, 0.599317, 0.794751, 0.623147, 0.504011, -0.138977],
             [0.235021, 0.074162, 0.162608], [0.235021]),
            (4, 0.0, [-0.205243, 0.793725, -1.094785, 0.276611, 0.307675, -0.236165, 1.252854, -0.342984],
             [-1.084365, -1.023566, -1.170002], [-1.084365]),
        ],
    ),
    # 3 classes; a batch of 6 is no multiple of 4: mbstd takes the whole batch (and zeros for one sample);
    # the zoo's D does not blend at 8x8.
    "AC-GAN at 8x8": (
        dict(latent=7, depth0=8, depths=[6], out=3, mbstd=1, decision=4, seed=2, scale=1.0),
        6,
        {},
        [
            (8, 0.5, [0.109294, -0.957276, 0.13646, 0.830186, 0.229384, 1.394388, 0.438021, 2.032611],
             [0.775038, 0.296961, -2.400879, -0.634149, 0.035267, 0.61317, -2.879894, -0.293944, -0.221734,
              0.499414, -1.713221, 0.295761, -0.319254, 0.855079, -2.261373, 0.286853, -0.37386, 0.810046,
              -1.749404, 0.491271, -0.179946, 0.724498, -2.168646, 0.269242],
             [0.821395, 0.152697, -2.408599, -0.675127]),
            (8, 0.0, [-0.497793, -2.561201, 0.01316, 0.721259, -2.075598, 1.392219, 0.751643, 2.385897],
             [0.239023, 0.484599, -1.872013, 0.19113, 0.151746, 0.551405, -2.247418, 0.066549, 0.174259,
              0.394049, -1.806895, -0.037089, -0.542638, 0.575227, -2.347962, 0.329214, 0.380536, 0.446116,
              -2.346267, -0.300119, 0.254383, 0.151719, -2.653698, -0.368567],
             [0.274353, 0.367191, -1.866578, 0.160212]),
        ],
    ),
    # Two mbstd groups of 4.
    "no equalized lr, leak 0.1, tanh": (
        dict(latent=5, depth0=4, depths=[4, 4], out=3, mbstd=1, decision=1, seed=3, scale=0.2),
        8,
        dict(equalized_lr=False, lrelu_slope=0.1, output_activation="tanh"),
        [
            (16, 0.8, [0.358636, -0.354909, 0.495601, 0.401729, 0.347435, 0.400201, -0.341249, -0.4206],
             [0.670454, 0.64737, 0.674411, 0.677958, 0.655362, 0.669713, 0.655763, 0.673169], [0.668427]),
            (8, 0.25, [0.384395, -0.222689, 0.423355, 0.340439, 0.367316, 0.339105, -0.227939, -0.299333],
             [0.687127, 0.596728, 0.667417, 0.657535, 0.656038, 0.69064, 0.716294, 0.666342], [0.680019]),
        ],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ZOO_CASES)
def test_other_configurations_match_the_zoo(case):
    cfg, n, options, evals = ZOO_CASES[case]
    g_state, d_state, rng = zoo_state_dicts(**cfg)
    G, D = load_progan_zoo(g_state, d_state, **options)
    c_dim = cfg["decision"] - 1
    assert (G.c_dim, D.c_dim, G.z_dim, G.img_channels) == (c_dim, c_dim, cfg["latent"] - c_dim, cfg["out"])
    z = torch.from_numpy(rng.standard_normal((n, G.z_dim)).astype(np.float32))
    c = F.one_hot(torch.arange(n) % c_dim, c_dim).float() if c_dim else no_labels(n)
    for res, zoo_alpha, g_samples, d_logits, d_logit_alone in evals:
        img = torch.from_numpy(rng.standard_normal((n, cfg["out"], res, res)).astype(np.float32))
        with torch.no_grad():
            out = G(z, c, resolution=res, alpha=1 - zoo_alpha).flatten()
            assert max_error(out[:: max(1, out.numel() // 8)], g_samples) < TOL, (res, zoo_alpha)
            assert max_error(D(img, c, alpha=1 - zoo_alpha), d_logits) < TOL, (res, zoo_alpha)
            assert max_error(D(img[:1], c[:1], alpha=1 - zoo_alpha), d_logit_alone) < TOL, (res, zoo_alpha)


# --------------------------------------------------------------------------------------------------
# Checkpoint files


class BaseConfig:
    """The zoo's config holder, ``models.utils.config.BaseConfig``: a class with no members of its own."""


def save_zoo_checkpoint(path: Path, checkpoint: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.save`` as the zoo's ``ProgressiveGAN.save`` does: the config pickled as the zoo's class."""
    with monkeypatch.context() as m:
        module = types.ModuleType("models.utils.config")
        module.BaseConfig = BaseConfig
        m.setitem(sys.modules, "models.utils.config", module)
        m.setattr(BaseConfig, "__module__", "models.utils.config")
        torch.save(checkpoint, path)


def zoo_config(**fields) -> BaseConfig:
    config = BaseConfig()
    vars(config).update(
        dict(depthScale0=128, depthOtherScales=[128, 128, 64, 32], leakyReluLeak=0.2, miniBatchStdDev=True)
    )
    vars(config).update(perChannelNormalization=True, equalizedlR=True, alpha=0.0, dimOutput=3, **fields)
    return config


def test_checkpoint_file(states, ref, tmp_path, monkeypatch):
    g_state, d_state = ({k: torch.from_numpy(v) for k, v in s.items()} for s in states)
    average = {k: v * 0.5 for k, v in g_state.items()}
    path = tmp_path / "celeba_s4_i1000.pt"
    config = zoo_config(lossCriterion="DCGAN", categoryVectorDim=0)
    save_zoo_checkpoint(
        path, {"config": config, "netG": g_state, "netD": d_state, "avgG": average}, monkeypatch
    )

    z = torch.from_numpy(ref["in/z"])
    G, D = load_progan_zoo(path)
    with torch.no_grad():
        # The DCGAN loss gives the zoo's generator a tanh output.
        assert max_error(G(z, no_labels(4), alpha=0.7), np.tanh(ref["out/alpha0.3/img"])) < TOL
        assert max_error(D(torch.from_numpy(ref["out/alpha0.3/img"]), no_labels(4), alpha=0.7),
                         ref["out/alpha0.3/D_logits"]) < TOL  # fmt: skip
        G_avg, _ = load_progan_zoo(path, average_generator=True)
        assert torch.equal(G_avg.dense.weight, average["formatLayer.module.weight"].float())


def test_checkpoint_with_other_objects_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"config": types.SimpleNamespace(alpha=0.0), "netG": {}, "netD": {}}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_progan_zoo(path)


# --------------------------------------------------------------------------------------------------
# Errors


def test_mismatched_state_dicts_raise(states):
    g_state, d_state = states
    with pytest.raises(ValueError, match="missing toRGBLayers.2.module.bias"):
        load_progan_zoo({k: v for k, v in g_state.items() if k != "toRGBLayers.2.module.bias"}, d_state)
    with pytest.raises(ValueError, match="unexpected toRGBLayers.9.module.weight"):
        load_progan_zoo(g_state | {"toRGBLayers.9.module.weight": np.zeros((3, 32, 1, 1))}, d_state)
    bad = d_state | {"scaleLayers.1.1.module.weight": np.zeros((128, 128, 1, 1))}
    with pytest.raises(
        ValueError, match=r"scaleLayers.1.1.module.weight: shape \[128, 128, 1, 1\], expected"
    ):
        load_progan_zoo(g_state, bad)
    with pytest.raises(ValueError, match="formatLayer.module.weight' is missing"):
        load_progan_zoo(d_state, g_state)
    with pytest.raises(ValueError, match="discriminator"):
        load_progan_zoo(g_state)


# --------------------------------------------------------------------------------------------------
# Our own networks


@pytest.fixture(scope="module")
def fresh():
    torch.manual_seed(0)
    kwargs = dict(c_dim=2, img_resolution=32, channel_base=256, channel_max=16)
    return ProGANGenerator(z_dim=8, **kwargs), ProGANDiscriminator(**kwargs)


def test_fresh_networks(fresh):
    G, D = fresh
    assert G.init_kwargs["channels"] == D.init_kwargs["channels"] == [16, 16, 16, 8]
    assert ProGANGenerator(4, 0, 64).init_kwargs["channels"] == [512, 512, 512, 512, 256]  # the paper's
    z, c = torch.randn(3, 8), F.one_hot(torch.tensor([0, 1, 1]), 2).float()
    for res in (4, 8, 32):
        img = G(z, c, resolution=res, alpha=0.5)
        assert img.shape == (3, 3, res, res)
        assert D(img, c, alpha=0.5).shape == (3, 3)
    with pytest.raises(ValueError, match="resolution"):
        G(z, c, resolution=12)
    with pytest.raises(ValueError, match="alpha"):
        D(img, c, alpha=1.5)
    with pytest.raises(ValueError, match="c must have shape"):
        G(z, c[:, :1])


def test_fade_in_is_continuous(fresh):
    G, D = fresh
    z, c = torch.randn(4, 8), F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    with torch.no_grad():
        for res in (8, 16, 32):
            lower = G(z, c, resolution=res // 2)
            assert torch.allclose(G(z, c, resolution=res, alpha=0.0), F.interpolate(lower, scale_factor=2))
            blend = 0.75 * F.interpolate(lower, scale_factor=2) + 0.25 * G(z, c, resolution=res)
            assert torch.allclose(G(z, c, resolution=res, alpha=0.25), blend, atol=1e-6)
            img = torch.randn(4, 3, res, res)
            assert torch.allclose(D(img, c, alpha=0.0), D(F.avg_pool2d(img, 2), c), atol=1e-6)
            assert not torch.allclose(D(img, c, alpha=0.5), D(img, c), atol=1e-6)


def test_save_load_round_trip(nets, ref, tmp_path):
    G, D = nets
    for net, net_input in ((G, ref["in/z"]), (D, ref["out/alpha0.3/img"])):
        save_network(tmp_path / "net.safetensors", net)
        loaded = load_network(tmp_path / "net.safetensors")
        assert type(loaded) is type(net) and loaded.init_kwargs == net.init_kwargs
        x = torch.from_numpy(net_input)
        with torch.no_grad():
            assert torch.equal(loaded(x, no_labels(4), alpha=0.7), net(x, no_labels(4), alpha=0.7))
