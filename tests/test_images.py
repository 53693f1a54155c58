"""pipeline.images: every mode converts to the RGB that an independent computation predicts, and every
kind of broken file is refused with a reason."""

from __future__ import annotations

import colorsys
import pickle

import numpy as np
import PIL.Image
import pytest

from pipeline.images import BadImageError, load_rgb, resize_square, to_rgb
from tests.bad_inputs import loadable, make_bad_input_corpus, write_png_bomb


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    return directory, make_bad_input_corpus(directory)


def _rgb_ramp(height: int = 16, width: int = 24) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 7 % 256], axis=2).astype(
        np.uint8
    )


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return rgb.astype(np.float64) * a + 255 * (1 - a)


# --- the corpus ------------------------------------------------------------------------------------


def test_corpus_outcomes(corpus):
    directory, expected = corpus
    for name, outcome in expected.items():
        if loadable(outcome):
            image = load_rgb(directory / name)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        else:
            with pytest.raises(BadImageError) as info:
                load_rgb(directory / name)
            assert outcome in info.value.reason, (name, info.value.reason)
            assert info.value.path == str(directory / name)
            assert str(directory / name) in str(info.value)


def test_corpus_exif_image_comes_out_rotated(corpus):
    directory, _ = corpus
    stored = np.asarray(PIL.Image.open(directory / "no_face.png"))  # same pixels, no EXIF
    rotated = load_rgb(directory / "exif_rotated.jpg")
    assert rotated.shape == (stored.shape[1], stored.shape[0], 3)
    assert np.abs(rotated.astype(int) - np.rot90(stored, k=-1)).mean() < 3


# --- failures --------------------------------------------------------------------------------------


def test_truncated_png_is_refused(tmp_path):
    path = tmp_path / "cut.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(BadImageError, match="cut.png"):
        load_rgb(path)


def test_max_pixels_names_the_size(tmp_path):
    path = tmp_path / "big.png"
    PIL.Image.new("RGB", (100, 80)).save(path)
    with pytest.raises(BadImageError, match=r"decompression bomb \(100 x 80 pixels, limit 5000\)"):
        load_rgb(path, max_pixels=5000)
    assert load_rgb(path, max_pixels=8000).shape == (80, 100, 3)


def test_bomb_over_pils_hard_limit_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    write_png_bomb(path, 14_000, 14_000)  # 196 M pixels, over twice PIL's default limit
    assert path.stat().st_size < 100_000
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_rgb(path, max_pixels=10**9)


def test_min_size(tmp_path):
    path = tmp_path / "small.png"
    PIL.Image.new("RGB", (12, 30)).save(path)
    with pytest.raises(BadImageError, match=r"too small \(12 x 30 pixels, minimum side 16\)"):
        load_rgb(path, min_size=16)
    assert load_rgb(path, min_size=12).shape == (30, 12, 3)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="cannot read file"):
        load_rgb(tmp_path / "absent.png")


def test_error_survives_pickling():
    error = pickle.loads(pickle.dumps(BadImageError("a/b.jpg", "zero-byte file")))
    assert (error.path, error.reason, str(error)) == ("a/b.jpg", "zero-byte file", "a/b.jpg: zero-byte file")


# --- modes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16B", ".tif"), ("I", ".tif")])
def test_sixteen_bit_ramp_is_rescaled_not_clipped(tmp_path, mode, suffix):
    values = np.arange(65536, dtype=np.int64).reshape(256, 256)
    path = tmp_path / f"ramp{suffix}"
    if mode == "I":
        PIL.Image.fromarray(values.astype(np.int32), "I").save(path)
    elif mode == "I;16B":
        PIL.Image.frombytes(mode, (256, 256), values.astype(">u2").tobytes()).save(path)
    else:
        PIL.Image.fromarray(values.astype(np.uint16)).save(path)
    assert PIL.Image.open(path).mode == mode

    got = load_rgb(path)
    expected = np.round(values * 255.0 / 65535.0).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(got[..., channel], expected)
    flat = got[..., 0].ravel()
    assert flat[1000] == 4 and flat[257 * 100] == 100 and flat[65535] == 255


def test_int_mode_outside_sixteen_bits_is_refused(tmp_path):
    path = tmp_path / "neg.tif"
    PIL.Image.fromarray(np.full((16, 16), -5, np.int32), "I").save(path)
    with pytest.raises(BadImageError, match="16-bit range"):
        load_rgb(path)


def test_float_mode(tmp_path):
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    path = tmp_path / "f.tif"
    PIL.Image.fromarray(values, "F").save(path)
    got = load_rgb(path)
    np.testing.assert_array_equal(got[..., 2], np.rint(values.astype(np.float64) * 255).astype(np.uint8))
    PIL.Image.fromarray(values * 2, "F").save(path)
    with pytest.raises(BadImageError, match=r"outside \[0, 1\]"):
        load_rgb(path)


def test_one_bit(tmp_path):
    bits = (np.indices((16, 16)).sum(axis=0) % 2).astype(bool)
    path = tmp_path / "bits.png"
    PIL.Image.fromarray(bits).save(path)
    assert PIL.Image.open(path).mode == "1"
    np.testing.assert_array_equal(load_rgb(path), np.repeat(bits[..., None] * 255, 3, axis=2))


def test_grey(tmp_path):
    grey = _rgb_ramp()[..., 0]
    path = tmp_path / "grey.png"
    PIL.Image.fromarray(grey).save(path)
    np.testing.assert_array_equal(load_rgb(path), np.repeat(grey[..., None], 3, axis=2))


def test_grey_alpha_over_white(tmp_path):
    ramp = _rgb_ramp()
    grey, alpha = ramp[..., 0], ramp[..., 1]
    path = tmp_path / "la.png"
    PIL.Image.fromarray(np.stack([grey, alpha], axis=2), "LA").save(path)
    expected = _over_white(np.repeat(grey[..., None], 3, axis=2), alpha)
    assert np.abs(load_rgb(path) - expected).max() <= 1


def test_rgba_over_white(tmp_path):
    ramp = _rgb_ramp()
    alpha = ramp[..., 2]
    path = tmp_path / "rgba.png"
    PIL.Image.fromarray(np.concatenate([ramp, alpha[..., None]], axis=2), "RGBA").save(path)
    got = load_rgb(path)
    assert np.abs(got - _over_white(ramp, alpha)).max() <= 1
    assert (got[alpha == 0] == 255).all()


def test_premultiplied_alpha_over_white():
    ramp = _rgb_ramp()
    alpha = ramp[..., 2]
    premultiplied = np.rint(ramp * (alpha[..., None] / 255)).astype(np.uint8)
    image = PIL.Image.fromarray(np.concatenate([premultiplied, alpha[..., None]], axis=2), "RGBA")
    got = np.asarray(to_rgb(PIL.Image.frombytes("RGBa", image.size, image.tobytes())))
    # Premultiplied 8-bit values lose precision where alpha is small; the composite does not.
    assert np.abs(got - _over_white(ramp, alpha)).max() <= 2


def test_palette_with_and_without_transparency(tmp_path):
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (256, 3), np.uint8)
    indices = rng.integers(0, 8, (20, 30), np.uint8)
    image = PIL.Image.fromarray(indices, "P")
    image.putpalette(palette.ravel().tolist())

    plain, transparent = tmp_path / "p.png", tmp_path / "pt.png"
    image.save(plain)
    image.save(transparent, transparency=3)
    assert PIL.Image.open(transparent).mode == "P" and "transparency" in PIL.Image.open(transparent).info

    np.testing.assert_array_equal(load_rgb(plain), palette[indices])
    expected = palette[indices].copy()
    expected[indices == 3] = 255
    np.testing.assert_array_equal(load_rgb(transparent), expected)


def test_cmyk_made_from_known_rgb(tmp_path):
    rgb = np.asarray(PIL.Image.fromarray(_rgb_ramp(8, 8)).resize((64, 64), PIL.Image.Resampling.BILINEAR))
    cmyk = np.concatenate([255 - rgb, np.zeros_like(rgb[..., :1])], axis=2)  # naive CMYK, no black
    tiff, jpeg = tmp_path / "c.tif", tmp_path / "c.jpg"
    PIL.Image.fromarray(cmyk, "CMYK").save(tiff)
    PIL.Image.fromarray(cmyk, "CMYK").save(jpeg, quality=98)
    np.testing.assert_array_equal(load_rgb(tiff), rgb)
    assert np.abs(load_rgb(jpeg).astype(int) - rgb).mean() < 2


def test_ycbcr_tiff(tmp_path):
    rgb = _rgb_ramp().astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # ITU-R BT.601 full range, as JFIF defines it.
    ycc = np.stack(
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
            128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
        ],
        axis=2,
    )
    path = tmp_path / "ycc.tif"
    PIL.Image.fromarray(np.clip(np.rint(ycc), 0, 255).astype(np.uint8), "YCbCr").save(path)
    assert PIL.Image.open(path).mode == "YCbCr"
    assert np.abs(load_rgb(path) - rgb).max() <= 3


def test_hsv():
    rgb = _rgb_ramp()
    hsv = np.array([[colorsys.rgb_to_hsv(*(pixel / 255)) for pixel in row] for row in rgb.astype(np.float64)])
    image = PIL.Image.fromarray(np.rint(hsv * 255).astype(np.uint8), "HSV")
    assert np.abs(np.asarray(to_rgb(image)).astype(int) - rgb).max() <= 3


@pytest.mark.parametrize(
    "orientation, display",
    [
        (2, np.fliplr),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored pixels turned 90 degrees clockwise for display
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_exif_orientation(tmp_path, orientation, display):
    stored = _rgb_ramp(16, 24)
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.png"
    PIL.Image.fromarray(stored).save(path, exif=exif)
    np.testing.assert_array_equal(load_rgb(path), display(stored))


def test_unsupported_mode_names_the_source():
    with pytest.raises(BadImageError, match=r"x\.raw: unsupported image mode 'La'"):
        to_rgb(PIL.Image.new("La", (4, 4)), source="x.raw")


# --- resize_square ---------------------------------------------------------------------------------


def test_resize_square_center_crops_first():
    wide = _rgb_ramp(16, 24)
    got = np.asarray(resize_square(PIL.Image.fromarray(wide), 16))
    np.testing.assert_array_equal(got, wide[:, 4:20])


def test_box_filter_is_the_block_mean():
    # Each 2x2 block is [[m+e+d1, m+e-d1], [m-e+d2, m-e-d2]]: its mean is m, and so are the means of
    # PIL's two separable passes (rows, then columns), so the 8-bit box result must be m exactly.
    rng = np.random.default_rng(2)
    m = rng.integers(40, 216, (16, 16, 3))
    e, d1, d2 = (rng.integers(-20, 21, (16, 16, 3)) for _ in range(3))
    blocks = np.stack([np.stack([m + e + d1, m + e - d1], -1), np.stack([m - e + d2, m - e - d2], -1)], -2)
    image = blocks.transpose(0, 3, 1, 4, 2).reshape(32, 32, 3).astype(np.uint8)
    np.testing.assert_array_equal(image.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3)), m)

    box = np.asarray(resize_square(PIL.Image.fromarray(image), 16, "box"))
    np.testing.assert_array_equal(box, m)
    lanczos = np.asarray(resize_square(PIL.Image.fromarray(image), 16, "lanczos"))
    assert np.abs(lanczos.astype(int) - m).mean() > 3


def test_resize_square_rejects_unknown_filter():
    with pytest.raises(ValueError, match="unknown resize filter 'cubic'"):
        resize_square(PIL.Image.new("RGB", (8, 8)), 4, "cubic")
