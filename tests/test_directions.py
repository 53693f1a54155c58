"""stylegan.directions (SeFa, GANSpace, InterFaceGAN, edit) and the ``python -m stylegan edit`` command.

The network is NVIDIA's 64 px StyleGAN2-ADA reference (random weights, 10 ws of 128 dimensions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

from stylegan.__main__ import main
from stylegan.archs import MissingWSpaceError
from stylegan.directions import (
    edit,
    fit_linear_boundary,
    ganspace,
    interfacegan,
    resolve_direction,
    sample_w,
    sefa,
    style_affines,
)
from stylegan.generate import Sampler, style_layers
from stylegan.interop import load_official_npz
from stylegan.networks_progan import ProGANGenerator
from stylegan.serialization import save_network

REFERENCE = Path(__file__).resolve().parent / "reference" / "sg2ada_G64_D64.npz"
RES, NUM_WS, W_DIM = 64, 10, 128

# Which w each style affine of a 64 px StyleGAN2 reads: a block's toRGB shares the next block's first w.
EXPECTED_AFFINES = [
    ("b4.conv1.affine", 0),
    ("b4.torgb.affine", 1),
    ("b8.conv0.affine", 1),
    ("b8.conv1.affine", 2),
    ("b8.torgb.affine", 3),
    ("b16.conv0.affine", 3),
    ("b16.conv1.affine", 4),
    ("b16.torgb.affine", 5),
    ("b32.conv0.affine", 5),
    ("b32.conv1.affine", 6),
    ("b32.torgb.affine", 7),
    ("b64.conv0.affine", 7),
    ("b64.conv1.affine", 8),
    ("b64.torgb.affine", 9),
]


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return load_official_npz(REFERENCE)[0].eval()


@pytest.fixture(scope="module")
def network_file(tmp_path_factory, G) -> Path:
    path = tmp_path_factory.mktemp("net") / "G.safetensors"
    save_network(path, G)
    return path


def sefa_matrix(G: torch.nn.Module, layers: list[int]) -> np.ndarray:
    """SeFa's matrix built by hand: the affine weights of the layers, one unit-length row per channel."""
    rows = [
        G.synthesis.get_submodule(name).weight.detach().double().numpy()
        for name, index in EXPECTED_AFFINES
        if index in layers
    ]
    A = np.concatenate(rows)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def same_up_to_sign(a: torch.Tensor, b: np.ndarray, tol: float) -> bool:
    return bool(np.all(np.abs(np.abs(np.sum(a.double().numpy() * b, axis=-1)) - 1) < tol))


# --- SeFa -----------------------------------------------------------------------------------------


def test_style_affines_find_the_w_each_layer_reads(G):
    found = style_affines(G)
    assert [(name, index) for name, index, _ in found] == EXPECTED_AFFINES
    assert all(weight.shape[1] == W_DIM for _, _, weight in found)


@pytest.mark.parametrize("layers", [None, [0, 1, 2], "fine"])
def test_sefa_matches_an_eigendecomposition_of_the_explicit_matrix(G, layers):
    chosen = list(range(NUM_WS)) if layers is None else style_layers(layers, NUM_WS)
    A = sefa_matrix(G, chosen)
    values, vectors = scipy.linalg.eigh(A.T @ A)
    values, vectors = values[::-1][:6], vectors[:, ::-1][:, :6].T

    directions, eigenvalues = sefa(G, 6, layers)
    assert directions.shape == (6, W_DIM) and eigenvalues.shape == (6,)
    np.testing.assert_allclose(eigenvalues.numpy(), values, rtol=1e-5)
    assert same_up_to_sign(directions, vectors, 1e-4)


def test_sefa_top_direction_maximises_the_style_change(G):
    A = torch.from_numpy(sefa_matrix(G, list(range(NUM_WS))))
    directions, eigenvalues = sefa(G, 5)
    d = directions.double()
    torch.testing.assert_close(d @ d.T, torch.eye(5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    # |A d|^2 is the eigenvalue, and no unit vector does better than the top direction.
    torch.testing.assert_close((A @ d.T).square().sum(0), eigenvalues.double(), rtol=1e-5, atol=0)
    v = torch.randn(5000, W_DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.cat([v / v.norm(dim=1, keepdim=True), d[1:]])
    assert (A @ v.T).square().sum(0).max() < (A @ d[0]).square().sum()
    # The sign convention: each direction's largest component is positive.
    largest = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True))
    assert torch.all(largest > 0)


def test_directions_need_a_w_space():
    progan = ProGANGenerator(z_dim=8, c_dim=0, img_resolution=8, channel_base=64, channel_max=16)
    for find in (sefa, ganspace):
        with pytest.raises(MissingWSpaceError, match="W space"):
            find(progan, 2)


# --- GANSpace -------------------------------------------------------------------------------------


def test_sample_w_is_the_mapping_of_seeded_z(G):
    w = sample_w(G, 300, seed=4, batch_size=128)
    z = torch.randn([300, G.z_dim], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = G.mapping(z, None)[:, 0]
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-5)
    assert not torch.equal(w, sample_w(G, 300, seed=5))


def test_ganspace_matches_numpy_svd_of_the_same_samples(G):
    directions, stds = ganspace(G, 4, num_samples=3000, seed=1)
    w = sample_w(G, 3000, seed=1).double().numpy()
    _, s, vh = np.linalg.svd(w - w.mean(axis=0), full_matrices=False)
    assert same_up_to_sign(directions, vh[:4], 1e-4)
    np.testing.assert_allclose(stds.numpy(), s[:4] / np.sqrt(3000 - 1), rtol=1e-5)
    # The std along a direction is the spread of the samples' projections on it.
    projections = (w - w.mean(axis=0)) @ directions.double().numpy().T
    np.testing.assert_allclose(projections.std(axis=0, ddof=1), stds.numpy(), rtol=1e-5)


# --- InterFaceGAN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("noisy", [False, True])
def test_boundary_fit_recovers_a_known_normal(noisy):
    rng = np.random.default_rng(0)
    d = 32
    x = rng.normal(size=(4000, d)) * rng.uniform(0.3, 3.0, size=d) + 5.0  # anisotropic, off the origin
    normal = rng.normal(size=d)
    normal /= np.linalg.norm(normal)
    offset = -float(normal @ x.mean(axis=0)) + 0.5
    score = x @ normal + offset
    labels = score + (rng.logistic(size=len(x)) * 0.3 if noisy else 0) > 0

    found, found_offset = fit_linear_boundary(torch.from_numpy(x), labels)
    assert found.shape == (d,) and found.norm().item() == pytest.approx(1, abs=1e-6)
    cosine = float(found.double().numpy() @ normal)
    assert cosine > (0.99 if noisy else 0.995)
    predicted = x @ found.double().numpy() + found_offset > 0
    assert (predicted == (score > 0)).mean() > 0.97
    with pytest.raises(ValueError, match="both classes"):
        fit_linear_boundary(x, np.ones(len(x), bool))


def brightness(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


def test_interfacegan_normal_adds_the_attribute(G):
    """A classifier of bright images: moving along the normal it finds brightens every image."""
    seen = []

    def is_bright(images: torch.Tensor) -> torch.Tensor:
        labels = brightness(images) > 0.0
        seen.append(labels)
        return labels

    normal = interfacegan(G, is_bright, num_samples=120, seed=2, batch_size=60)
    labels = torch.cat(seen)
    assert len(labels) == 120 and 0.2 < labels.float().mean() < 0.8
    assert normal.shape == (W_DIM,) and normal.norm().item() == pytest.approx(1, abs=1e-6)
    # The same samples labelled by hand give the same boundary.
    torch.testing.assert_close(interfacegan(G, labels=labels, num_samples=120, seed=2), normal)

    ws = G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(9)), None)
    with torch.no_grad():
        before = brightness(G.synthesis(ws, noise_mode="const"))
        after = brightness(G.synthesis(edit(ws, normal, 3.0), noise_mode="const"))
    assert torch.all(after > before)
    with pytest.raises(ValueError, match="either a classifier or labels"):
        interfacegan(G, is_bright, labels=labels)


# --- editing --------------------------------------------------------------------------------------


def test_edit_touches_only_the_named_layers():
    ws = torch.randn(3, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(0))
    original = ws.clone()
    direction = torch.randn(W_DIM, generator=torch.Generator().manual_seed(1))
    edited = edit(ws, direction, -2.5, [1, 4])
    torch.testing.assert_close(edited[:, [1, 4]], ws[:, [1, 4]] - 2.5 * direction, rtol=0, atol=0)
    others = [i for i in range(NUM_WS) if i not in (1, 4)]
    assert torch.equal(edited[:, others], ws[:, others]) and torch.equal(ws, original)
    coarse = edit(ws, direction, 1.0, "coarse")
    assert torch.equal(coarse[:, 2:], ws[:, 2:]) and not torch.equal(coarse[:, :2], ws[:, :2])
    torch.testing.assert_close(edit(ws, direction, 1.0), ws + direction, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"direction must have shape \[128\]"):
        edit(ws, direction[:5], 1.0)
    with pytest.raises(ValueError, match=r"indices in \[0, 10\)"):
        edit(ws, direction, 1.0, [10])


def test_resolve_direction_names_and_files(G, tmp_path):
    torch.testing.assert_close(resolve_direction("sefa:1", G), sefa(G, 2)[0][1])
    torch.testing.assert_close(resolve_direction("sefa:0", G, [0, 1]), sefa(G, 1, [0, 1])[0][0])
    vector = np.linspace(-1, 1, W_DIM, dtype=np.float32)
    np.save(tmp_path / "smile.npy", vector[None])
    np.testing.assert_array_equal(resolve_direction(tmp_path / "smile.npy", G).numpy(), vector)
    for bad, error, message in (
        ("sefa:x", ValueError, "sefa:K with K an integer"),
        ("pca:0", ValueError, "expected sefa:K, ganspace:K or a .npy"),
        (tmp_path / "absent.npy", FileNotFoundError, "direction file not found"),
    ):
        with pytest.raises(error, match=message):
            resolve_direction(bad, G)
    np.save(tmp_path / "short.npy", vector[:7])
    with pytest.raises(ValueError, match=r"the network needs one \[128\] vector"):
        resolve_direction(tmp_path / "short.npy", G)


# --- CLI ------------------------------------------------------------------------------------------


def cells(path: Path, rows: int, cols: int) -> np.ndarray:
    grid = np.asarray(PIL.Image.open(path).convert("RGB"))
    assert grid.shape == (rows * RES, cols * RES, 3)
    return grid.reshape(rows, RES, cols, RES, 3).transpose(0, 2, 1, 3, 4).astype(int)


def test_cli_edit_grid_rows_are_seeds_and_columns_strengths(network_file, G, tmp_path):
    out = tmp_path / "grid.png"
    common = ["--network", str(network_file), "--device", "cpu", "--seeds", "0-1", "--out", str(out)]
    main(["edit", *common, "--direction", "sefa:0", "--strength", "-3..3", "--layers", "0-5"])
    grid = cells(out, 2, 7)
    sampler = Sampler(G)
    ws = sampler.map(sampler.latents([0, 1]))
    direction = sefa(G, 1, list(range(6)))[0][0]
    for col, strength in ((0, -3.0), (5, 2.0)):
        expected = sampler.synthesize(edit(ws, direction, strength, list(range(6))))
        assert np.abs(grid[:, col] - expected).max() <= 1, strength
    assert np.abs(grid[:, 3] - sampler.generate([0, 1])).max() <= 1  # strength 0: the seeds' own images

    # Batches of other sizes may round a few pixels the other way.
    np.save(tmp_path / "d.npy", direction.numpy())
    main(["edit", *common, "--direction", str(tmp_path / "d.npy"), "--strength", "-2,0,2", "--layers", "0-5"])
    assert np.abs(cells(out, 2, 3) - grid[:, [1, 3, 5]]).max() <= 1
    main(["edit", *common, "--direction", "ganspace:0", "--strength=-1..1:3"])
    assert cells(out, 2, 3).shape[:2] == (2, 3)


def test_cli_edit_reports_bad_input(network_file, tmp_path, capsys):
    common = ["edit", "--network", str(network_file), "--device", "cpu", "--seeds", "0", "--out", "x.png"]
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--direction", "sefa:first"])
    assert exit_info.value.code == 2 and "sefa:K with K an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--direction", "sefa:0", "--strength", "-3..3:1"])
    assert "bad strengths '-3..3:1'" in capsys.readouterr().err
