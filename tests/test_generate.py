"""stylegan.generate and the ``python -m stylegan`` CLI.

Exactness is checked against NVIDIA's own outputs for the reference network in tests/reference;
the rest uses small random networks built from stylegan.networks_stylegan2.
"""

from __future__ import annotations

import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan.__main__ import main
from stylegan.generate import Sampler, image_grid, parse_seeds, slerp, style_layers, z_from_seed
from stylegan.networks_stylegan2 import Generator as StyleGAN2
from stylegan.serialization import save_network

REFERENCE = Path(__file__).resolve().parent / "reference" / "sg2ada_G64_D64.npz"
RES = 16


def small_network(c_dim: int = 0, seed: int = 0) -> StyleGAN2:
    torch.manual_seed(seed)
    return StyleGAN2(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=RES,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 16},
    )


@pytest.fixture(scope="module")
def network_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("net") / "G.safetensors"
    save_network(path, small_network())
    return path


@pytest.fixture(scope="module")
def G(network_file) -> Sampler:
    return Sampler.load(network_file)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def reference_G() -> Sampler:
    return Sampler.load(REFERENCE)


# --- against NVIDIA's outputs ---------------------------------------------------------------------


def test_reference_mapping_and_truncation(reference, reference_G):
    G = reference_G
    z = torch.from_numpy(reference["in/z"])
    np.testing.assert_allclose(G.map(z).numpy(), reference["out/ws"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(G.map(z, psi=0.7).numpy(), reference["out/ws_trunc_psi0.7"], rtol=0, atol=1e-5)


def test_reference_images_are_quantised_as_nvidia_does(reference, reference_G):
    G = reference_G
    images = G.synthesize(G.map(torch.from_numpy(reference["in/z"])), noise_mode="const")
    official = reference["out/img"].transpose(0, 2, 3, 1) * 127.5 + 128  # NCHW -> NHWC, before rounding
    expected = np.clip(official, 0, 255).astype(np.uint8)  # numpy's cast truncates, as torch's .to(uint8)
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    # Our float images agree with NVIDIA's to ~1e-6, so only values within that of an integer may round
    # the other way; every other pixel must be exactly NVIDIA's.
    near_boundary = np.abs(official - np.round(official)) < 1e-3
    assert np.array_equal(images[~near_boundary], expected[~near_boundary])
    assert np.abs(images.astype(int) - expected)[near_boundary].max(initial=0) <= 1
    # (img * 127.5 + 128) truncates; rounding or +127.5 would move about half of all values.
    assert (np.round(np.clip(official, 0, 255)) != expected).mean() > 0.3


def test_reference_style_mixing_ws(reference, reference_G):
    G = reference_G
    ws = torch.from_numpy(reference["out/ws"])
    mixed = ws.clone()
    mixed[:, 4:] = ws.roll(-1, dims=0)[:, 4:]  # the reference takes layers >= 4 from the next row
    np.testing.assert_array_equal(mixed.numpy(), reference["in/ws_mixed"])
    images = G.synthesize(mixed)
    expected = np.clip(reference["out/img_mixed"].transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(
        np.uint8
    )
    assert np.abs(images.astype(int) - expected).max() <= 1


# --- seeds, latents and truncation ----------------------------------------------------------------


def test_seed_latents_match_numpy_randomstate(G):
    z = G.latents([0, 7])
    expected = np.stack([np.random.RandomState(s).randn(16) for s in (0, 7)]).astype(np.float32)
    np.testing.assert_array_equal(z.numpy(), expected)
    assert z_from_seed(2**32 - 1, 3).shape == (3,)
    with pytest.raises(ValueError, match="out of range"):
        z_from_seed(2**32, 3)


def test_generate_is_deterministic_per_seed(G):
    first = G.generate([5, 1, 9], psi=0.7)
    assert first.shape == (3, RES, RES, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, G.generate([5, 1, 9], psi=0.7))
    # A seed gives its image whatever else is in the call (up to one level: batched convolutions
    # may round differently).
    alone = G.generate([1], psi=0.7)[0]
    assert np.abs(alone.astype(int) - first[1]).max() <= 1
    assert not np.array_equal(first[0], first[2])


def test_psi_zero_gives_the_average_image_for_every_seed(G):
    images = G.generate(list(range(6)), psi=0.0)
    assert all(np.array_equal(images[0], image) for image in images[1:])
    at_average = G.synthesize(G.w_avg.expand(1, G.num_ws, -1))
    np.testing.assert_array_equal(images[0], at_average[0])


def test_cutoff_truncates_only_the_first_layers(G):
    z = G.latents([3])
    full, cut = G.map(z, psi=1.0), G.map(z, psi=0.0, cutoff=2)
    np.testing.assert_array_equal(cut[0, :2].numpy(), G.w_avg.expand(2, -1).numpy())
    np.testing.assert_array_equal(cut[0, 2:].numpy(), full[0, 2:].numpy())


def test_external_w_avg_is_the_centre_of_truncation(network_file, tmp_path):
    centre = np.linspace(-1, 1, 16, dtype=np.float32)
    np.savez(tmp_path / "w_avg.npz", w_avg=centre, num_samples=np.array(1000))
    G = Sampler.load(network_file, w_avg_path=tmp_path / "w_avg.npz")
    ws = G.map(G.latents([0, 1]), psi=0.0)
    np.testing.assert_array_equal(ws.numpy(), np.broadcast_to(centre, ws.shape))
    from safetensors.torch import save_file

    save_file({"w_avg": torch.from_numpy(centre)}, tmp_path / "w_avg.safetensors")
    G2 = Sampler.load(network_file, w_avg_path=tmp_path / "w_avg.safetensors")
    np.testing.assert_array_equal(G2.w_avg.numpy(), centre)

    np.savez(tmp_path / "short.npz", w_avg=centre[:8])
    with pytest.raises(ValueError, match=r"w_avg has shape \[8\], the network needs \[16\]"):
        Sampler.load(network_file, w_avg_path=tmp_path / "short.npz")
    np.savez(tmp_path / "other.npz", mean=centre)
    with pytest.raises(ValueError, match="other.npz holds no 'w_avg'"):
        Sampler.load(network_file, w_avg_path=tmp_path / "other.npz")


def test_conditional_generation(tmp_path):
    path = tmp_path / "C.safetensors"
    save_network(path, small_network(c_dim=3))
    G = Sampler.load(path)
    mixed = G.generate([4, 4, 4], class_idx=[0, 1, 2])
    for k in range(3):
        assert np.abs(G.generate([4], class_idx=k)[0].astype(int) - mixed[k]).max() <= 1
    assert not np.array_equal(mixed[0], mixed[1])
    with pytest.raises(ValueError, match="conditional"):
        G.generate([0])
    with pytest.raises(ValueError, match="class 3 is out of range"):
        G.generate([0], class_idx=3)


# --- style mixing, truncation sweep, grids --------------------------------------------------------


@pytest.mark.parametrize(
    ("num_ws", "coarse", "middle", "fine"),
    [
        (18, range(0, 4), range(4, 8), range(8, 18)),
        (10, range(0, 2), range(2, 4), range(4, 10)),
        (6, [0], [1, 2], range(3, 6)),
    ],
)
def test_style_groups(num_ws, coarse, middle, fine):
    assert style_layers("coarse", num_ws) == list(coarse)
    assert style_layers("middle", num_ws) == list(middle)
    assert style_layers("fine", num_ws) == list(fine)


def test_style_groups_partition_every_depth():
    for num_ws in range(3, 40):
        groups = [style_layers(g, num_ws) for g in ("coarse", "middle", "fine")]
        assert all(groups) and sum(groups, []) == list(range(num_ws)), num_ws
    assert style_layers([0, 5], 6) == [0, 5]
    with pytest.raises(ValueError, match="unknown style group"):
        style_layers("medium", 10)
    with pytest.raises(ValueError, match=r"indices in \[0, 6\)"):
        style_layers([6], 6)


def test_style_mixing_grid_layout(G):
    rows, cols = [1, 2], [3, 4, 5]
    grid = np.asarray(G.style_mixing_grid(rows, cols, "middle", psi=0.8))
    assert grid.shape == (3 * RES, 4 * RES, 3)
    cell = lambda r, c: grid[r * RES : (r + 1) * RES, c * RES : (c + 1) * RES]  # noqa: E731
    assert not cell(0, 0).any()  # the blank corner
    col_images, row_images = G.generate(cols, psi=0.8), G.generate(rows, psi=0.8)
    for c in range(3):
        assert np.abs(cell(0, c + 1).astype(int) - col_images[c]).max() <= 1
    for r in range(2):
        assert np.abs(cell(r + 1, 0).astype(int) - row_images[r]).max() <= 1
    # cell (r, c): row seed r's ws with the middle layers of column seed c
    layers = style_layers("middle", G.num_ws)
    ws = G.map(G.latents([rows[1]]), psi=0.8)
    ws[:, layers] = G.map(G.latents([cols[2]]), psi=0.8)[:, layers]
    assert np.abs(cell(2, 3).astype(int) - G.synthesize(ws)[0]).max() <= 1
    assert not np.array_equal(cell(2, 3), cell(2, 0)) and not np.array_equal(cell(2, 3), cell(0, 3))


def test_truncation_sweep_columns_are_psi_values(G):
    seeds, psis = [0, 1, 2], [0.0, 0.5, 1.0]
    grid = np.asarray(G.truncation_sweep(seeds, psis))
    assert grid.shape == (3 * RES, 3 * RES, 3)
    for j, psi in enumerate(psis):
        column = G.generate(seeds, psi=psi)
        for i in range(3):
            assert (
                np.abs(grid[i * RES : (i + 1) * RES, j * RES : (j + 1) * RES].astype(int) - column[i]).max()
                <= 1
            )


def test_image_grid_places_images_row_by_row():
    images = np.stack([np.full((2, 3, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = np.asarray(image_grid(images, cols=2))
    assert grid.shape == (3 * 2, 2 * 3, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 3, 0] == 20 and grid[2, 0, 0] == 30 and grid[4, 0, 0] == 50
    assert not grid[4:, 3:].any()  # the empty cell
    gray = image_grid(np.zeros((2, 4, 4, 1), np.uint8), cols=2)
    assert gray.mode == "L" and gray.size == (8, 4)
    with pytest.raises(ValueError, match="uint8"):
        image_grid(np.zeros((2, 4, 4, 3)), cols=2)


# --- interpolation --------------------------------------------------------------------------------


def test_slerp_endpoints_norms_and_angles():
    gen = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(64, generator=gen, dtype=torch.float64),
        2 * torch.randn(64, generator=gen, dtype=torch.float64),
    )
    torch.testing.assert_close(slerp(a, b, 0.0), a, rtol=0, atol=1e-12)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=0, atol=1e-12)
    omega = math.acos(float(a @ b / (a.norm() * b.norm())))
    for t in (0.25, 0.5, 0.9):
        p = slerp(a, b, t)
        assert float(p.norm()) == pytest.approx((1 - t) * float(a.norm()) + t * float(b.norm()), rel=1e-12)
        angle_to_a = math.acos(float(p @ a / (p.norm() * a.norm())))
        assert angle_to_a == pytest.approx(t * omega, rel=1e-9)
    # parallel vectors: no division by sin(0); the norm is still interpolated
    torch.testing.assert_close(slerp(a, 3 * a, 0.5), 2 * a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_interpolation_file_has_every_frame(G, tmp_path, suffix):
    path = G.interpolate([0, 1, 2], tmp_path / f"loop{suffix}", frames_per_transition=4, frame_ms=50)
    with PIL.Image.open(path) as animation:
        assert animation.n_frames == 12 and animation.is_animated
        animation.seek(5)
        animation.load()
        assert animation.info.get("loop") == 0 and animation.info.get("duration") == 50


def test_interpolation_passes_through_the_seeds(G, tmp_path):
    seeds = [0, 1, 2]
    for space, tolerance in (("w", 0), ("z", 1)):
        path = G.interpolate(seeds, tmp_path / f"{space}.png", frames_per_transition=3, space=space, psi=0.7)
        with PIL.Image.open(path) as animation:
            for k, seed in enumerate(seeds):
                animation.seek(3 * k)
                frame = np.asarray(animation.convert("RGB"))
                assert np.abs(frame.astype(int) - G.generate([seed], psi=0.7)[0]).max() <= tolerance
    ws = G.interpolation_ws(seeds, 4, space="w")
    np.testing.assert_allclose(ws[2].numpy(), (0.5 * ws[0] + 0.5 * ws[4]).numpy(), atol=1e-6)  # lerp
    with pytest.raises(ValueError, match="at least 2 seeds"):
        G.interpolation_ws([0], 4)
    with pytest.raises(ValueError, match="must end in one of"):
        G.interpolate(seeds, tmp_path / "loop.mp4")


def test_interpolation_frames_can_be_resized(G, tmp_path):
    path = G.interpolate([0, 1], tmp_path / "big.webp", frames_per_transition=2, size=2 * RES)
    with PIL.Image.open(path) as animation:
        assert animation.size == (2 * RES, 2 * RES) and animation.n_frames == 4


# --- loading --------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_never_unpickles(network_file, tmp_path):
    marker = tmp_path / "code-ran"
    for name in ("G.pkl", "G.pt", "G.safetensors", "G.npz"):
        (tmp_path / name).write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(Exception):  # noqa: B017  (each format fails in its own way; none may run code)
            Sampler.load(tmp_path / name)
    np.savez(tmp_path / "w.npz", w_avg=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        Sampler.load(network_file, w_avg_path=tmp_path / "w.npz")
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"G.pkl: expected a .safetensors network or an official .npz"):
        Sampler.load(tmp_path / "G.pkl")
    with pytest.raises(FileNotFoundError, match="network file not found: .*absent.safetensors"):
        Sampler.load(tmp_path / "absent.safetensors")


# --- CLI ------------------------------------------------------------------------------------------


def test_parse_seeds():
    assert parse_seeds("0-3,10, 7") == [0, 1, 2, 3, 10, 7]
    for bad, message in (
        ("7-3", "bad seed range '7-3'"),
        ("a", "bad seed 'a'"),
        ("-1", "bad seed '-1'"),
        ("4294967296", "out of range"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


@pytest.mark.slow
def test_cli_generate_writes_one_png_per_seed(network_file, G, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylegan",
            "generate",
            "--network",
            str(network_file),
            "--seeds",
            "0-2,7",
            "--psi",
            "0.7",
            "--outdir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    expected = G.generate([0, 1, 2, 7], psi=0.7)
    for file, image in zip(files, expected, strict=True):
        assert np.abs(np.asarray(PIL.Image.open(tmp_path / "out" / file)).astype(int) - image).max() <= 1


def test_cli_mix_truncation_and_interpolate(network_file, tmp_path, capsys):
    common = ["--network", str(network_file), "--device", "cpu"]
    main(
        [
            "mix",
            *common,
            "--rows",
            "1,2",
            "--cols",
            "3-5",
            "--styles",
            "0-1",
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    assert PIL.Image.open(tmp_path / "m.png").size == (4 * RES, 3 * RES)
    main(["truncation", *common, "--seeds", "0-1", "--psis", "0,0.5,1", "--out", str(tmp_path / "t.png")])
    assert PIL.Image.open(tmp_path / "t.png").size == (3 * RES, 2 * RES)
    main(["interpolate", *common, "--seeds", "0-2", "--frames", "2", "--out", str(tmp_path / "i.gif")])
    assert PIL.Image.open(tmp_path / "i.gif").n_frames == 6
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["generate", "--network", "{tmp}/absent.safetensors", "--seeds", "0", "--outdir", "{tmp}"],
            "network file not found",
        ),
        (["generate", "--network", "{net}", "--seeds", "5-2", "--outdir", "{tmp}"], "bad seed range '5-2'"),
        (
            [
                "mix",
                "--network",
                "{net}",
                "--rows",
                "1",
                "--cols",
                "2",
                "--styles",
                "9",
                "--out",
                "{tmp}/m.png",
            ],
            r"indices in \[0, 6\)",
        ),
        (["interpolate", "--network", "{net}", "--seeds", "1", "--out", "{tmp}/i.gif"], "at least 2 seeds"),
        (
            ["generate", "--network", "{net}", "--seeds", "0", "--class", "1", "--outdir", "{tmp}"],
            "unconditional",
        ),
    ],
)
def test_cli_errors_are_clear(network_file, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, net=network_file) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
