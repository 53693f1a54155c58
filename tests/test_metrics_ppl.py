"""PPL, latent sampling and the W average on a linear toy generator whose answers are known in closed form."""

import numpy as np
import pytest
import scipy.integrate
import scipy.spatial
import scipy.stats
import torch

from stylegan.metrics import (
    dataset_label_sampler,
    face_crop,
    generate_images,
    ppl_distances,
    ppl_from_distances,
    slerp,
    w_average,
)
from stylegan.metrics.perceptual_path_length import lpips_input


class LinearG(torch.nn.Module):
    """w = z + c @ embed, broadcast to 2 ws; image = scale * w viewed as [3, res, res], plus noise."""

    def __init__(self, res=16, scale=0.02, c_dim=0, noise_strength=0.0):
        super().__init__()
        self.z_dim = self.w_dim = 3 * res * res
        self.c_dim, self.res, self.scale, self.noise_strength = c_dim, res, scale, noise_strength
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.register_buffer(
            "embed", torch.randn(c_dim, self.w_dim, generator=torch.Generator().manual_seed(0))
        )
        self.register_buffer("noise_const", torch.zeros(res, res))

    def mapping(self, z, c, truncation_psi=1.0):
        w = self.w_avg.lerp(z + c @ self.embed, truncation_psi)
        return w[:, None].repeat(1, 2, 1)

    def synthesis(self, ws, noise_mode="random"):
        img = self.scale * ws[:, 0].reshape(-1, 3, self.res, self.res)
        noise = (
            torch.randn_like(img[:, :1]) if noise_mode == "random" else self.noise_const.expand_as(img[:, :1])
        )
        return img + self.noise_strength * noise


def identity_features(images):
    """A toy LPIPS: the pixels themselves, so the distance is the squared L2 in [0, 255] units."""
    return images.flatten(1)


# --- building blocks -----------------------------------------------------------------------------


def test_slerp_matches_scipy_geometric_slerp():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5), rng.normal(size=5) * 3
    ts = np.linspace(0, 1, 7)
    expected = scipy.spatial.geometric_slerp(a / np.linalg.norm(a), b / np.linalg.norm(b), ts)
    ours = slerp(torch.from_numpy(a)[None], torch.from_numpy(b)[None], torch.from_numpy(ts)[:, None])
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)


def test_face_crop_takes_nvidia_rows_and_columns():
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    image = (1000 * rows + cols)[None, None]
    crop = face_crop(image)
    assert crop.shape[-2:] == (32, 32)
    assert crop[0, 0, 0, 0] == 1000 * 24 + 16 and crop[0, 0, -1, -1] == 1000 * 55 + 47


def test_lpips_input_scales_downsamples_and_repeats_gray():
    img = torch.rand(2, 1, 512, 512) * 2 - 1
    out = lpips_input(img, crop=False)
    expected = img.numpy().reshape(2, 1, 256, 2, 256, 2).mean(axis=(3, 5))
    assert out.shape == (2, 3, 256, 256)
    np.testing.assert_allclose(out[:, 2].numpy(), (expected[:, 0] + 1) * 127.5, rtol=1e-5, atol=1e-3)
    assert lpips_input(torch.full((1, 3, 8, 8), -1.0), crop=False).max() == 0
    # The factor comes from the uncropped resolution: a 1024 face crop (512) is averaged 4x4 to 128.
    assert lpips_input(torch.zeros(1, 3, 1024, 1024), crop=True).shape[-1] == 128


def test_ppl_from_distances_drops_below_1st_and_above_99th_percentile():
    d = np.random.default_rng(1).permutation(np.arange(200.0))
    s = np.sort(d)
    lo, hi = s[int(np.floor(0.01 * 199))], s[int(np.ceil(0.99 * 199))]
    assert ppl_from_distances(d) == pytest.approx(s[(s >= lo) & (s <= hi)].mean())
    assert ppl_from_distances(np.r_[np.ones(300), 1e9, 1e9]) == 1.0


# --- PPL closed forms ----------------------------------------------------------------------------

SCALE = 0.02
PIXEL = 127.5 * SCALE  # d(image in [0, 255]) / dw


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_in_w_of_a_linear_generator_is_twice_the_dimension(sampling):
    # lerp moves w by eps * (w1 - w0) wherever t is: dist = PIXEL^2 |w1 - w0|^2, mean PIXEL^2 * 2D.
    G = LinearG(scale=SCALE)
    d = ppl_distances(
        G, identity_features, 1000, space="w", sampling=sampling, batch_size=250, progress=False
    )
    assert ppl_from_distances(d) == pytest.approx(PIXEL**2 * 2 * G.z_dim, rel=0.01)


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_in_z_of_a_linear_generator_is_the_mean_squared_angle(sampling):
    # slerp walks the unit sphere at angular speed theta = angle(z0, z1): dist = (127.5 scale)^2 theta^2.
    # w = z has unit norm here; scale 20 keeps pixels in [-1, 1] and their float32 steps well resolved.
    scale = 20.0
    G = LinearG(scale=scale)
    dim = G.z_dim

    def angle_density(theta):  # of two independent Gaussian directions in `dim` dimensions
        return np.sin(theta) ** (dim - 2)

    norm = scipy.integrate.quad(angle_density, 0, np.pi, points=[np.pi / 2])[0]
    mean_sq = scipy.integrate.quad(lambda t: t**2 * angle_density(t), 0, np.pi, points=[np.pi / 2])[0] / norm
    d = ppl_distances(G, identity_features, 600, space="z", sampling=sampling, batch_size=200, progress=False)
    assert ppl_from_distances(d) == pytest.approx((127.5 * scale) ** 2 * mean_sq, rel=0.01)


def test_ppl_uses_const_noise_shared_by_both_images_and_leaves_g_untouched():
    seen = {}

    def recording_features(key):
        def features(images):
            seen[key] = images.clone()
            return images.flatten(1)

        return features

    kwargs = dict(space="w", sampling="full", batch_size=8, seed=3, progress=False)
    quiet = ppl_distances(LinearG(scale=SCALE), recording_features("quiet"), 8, **kwargs)
    noisy_g = LinearG(scale=SCALE, noise_strength=0.5)
    noisy = ppl_distances(noisy_g, recording_features("noisy"), 8, **kwargs)
    assert (seen["noisy"] - seen["quiet"]).abs().mean() > 10  # fresh noise was drawn into the buffer...
    np.testing.assert_allclose(noisy, quiet, rtol=1e-2)  # ...and it cancels within each pair
    assert torch.count_nonzero(noisy_g.noise_const) == 0  # on a copy: the caller's G is untouched


def test_ppl_distances_are_reproducible_by_seed():
    G = LinearG(scale=SCALE)
    kwargs = dict(space="z", sampling="full", batch_size=4, progress=False)
    a = ppl_distances(G, identity_features, 8, seed=5, **kwargs)
    np.testing.assert_array_equal(a, ppl_distances(G, identity_features, 8, seed=5, **kwargs))
    assert not np.allclose(a, ppl_distances(G, identity_features, 8, seed=6, **kwargs))


# --- sampling ------------------------------------------------------------------------------------


def test_conditional_generator_needs_labels_from_the_dataset():
    G = LinearG(c_dim=2)
    with pytest.raises(ValueError, match="label_sampler"):
        next(generate_images(G, 2, 2, seed=0, device=torch.device("cpu")))
    labels = np.array([[0.0, 1.0]] * 5)
    w = w_average(G, 64, 32, device="cpu", label_sampler=dataset_label_sampler(labels), progress=False)[
        "w_avg"
    ]
    assert np.abs(w - G.embed[1].numpy()).max() < 0.6  # the mean of z + embed[1]


def test_generate_images_truncates_toward_the_given_w_avg():
    G = LinearG(scale=0.5)
    w_avg = np.linspace(-1, 1, G.w_dim, dtype=np.float32)
    batches = list(
        generate_images(G, 5, 2, seed=0, device=torch.device("cpu"), truncation_psi=0.0, w_avg=w_avg)
    )
    assert [b.shape[0] for b in batches] == [2, 2, 1] and batches[0].dtype == torch.uint8
    expected = (
        ((0.5 * torch.from_numpy(w_avg)).reshape(3, 16, 16) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    )
    images = torch.cat(batches)
    # Random noise is off (strength 0); every image is the truncation centre.
    assert all(torch.equal(img, expected) for img in images)


def test_generate_images_is_reproducible_by_seed():
    G = LinearG(scale=0.3, noise_strength=0.2)  # random noise must follow the seed too
    first = torch.cat(list(generate_images(G, 6, 4, seed=11, device=torch.device("cpu"))))
    again = torch.cat(list(generate_images(G, 6, 4, seed=11, device=torch.device("cpu"))))
    other = torch.cat(list(generate_images(G, 6, 4, seed=12, device=torch.device("cpu"))))
    assert torch.equal(first, again) and not torch.equal(first, other)


# --- W average -----------------------------------------------------------------------------------


def test_w_average_of_standard_normal_w():
    G = LinearG()
    n, dim = 4000, G.w_dim
    stats = w_average(G, n, batch_size=1000, seed=0, device="cpu", progress=False)
    assert stats["w_avg"].shape == (dim,) and np.abs(stats["w_avg"]).max() < 5 / np.sqrt(n)
    np.testing.assert_allclose(stats["w_std"], 1.0, atol=0.06)
    chi = scipy.stats.chi(dim)  # |w - mean| is chi-distributed with `dim` degrees of freedom
    assert stats["distance_mean"] == pytest.approx(chi.mean(), rel=0.005)
    assert stats["distance_std"] == pytest.approx(chi.std(), rel=0.05)
    for p, value in stats["distance_percentiles"].items():
        assert value == pytest.approx(chi.ppf(p / 100), rel=0.01)
    assert sum(stats["distance_histogram"]["counts"]) == n
    assert stats["num_samples"] == n and stats["seed"] == 0
