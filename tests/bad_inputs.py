"""A corpus of awkward input images, for the tests of every stage that reads images from users.

:func:`make_bad_input_corpus` writes the files and says what should become of each one: ``OK`` for
images that must load (and go through alignment with ``method: none`` / ``center_crop`` and through
prepare), ``NO_FACE`` for a plain picture that loads but holds no face (a face aligner skips it),
and otherwise a keyword that the :class:`pipeline.images.BadImageError` reason contains.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image

__all__ = ["BOMB_SIZE", "NO_FACE", "OK", "loadable", "make_bad_input_corpus", "write_png_bomb"]

OK = "ok"
NO_FACE = "no face"

#: Side of the decompression bomb: 144 M pixels, over PIL's default limit (89 M) and under its hard
#: limit (179 M), so the loader's own check is the one that fires and names the size.
BOMB_SIZE = 12_000


def loadable(expected: str) -> bool:
    """Whether a corpus entry with this expected outcome is a usable image."""
    return expected in (OK, NO_FACE)


def make_bad_input_corpus(directory: str | Path) -> dict[str, str]:
    """Write the corpus into `directory` and return ``{file name: expected outcome}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = _smooth_photo(rng, 96, 128)
    expected: dict[str, str] = {}

    (directory / "zero_byte.jpg").write_bytes(b"")
    expected["zero_byte.jpg"] = "zero-byte"

    (directory / "not_an_image.jpg").write_text("<html><body>404 Not Found</body></html>\n")
    expected["not_an_image.jpg"] = "not an image"

    full = _jpeg_bytes(PIL.Image.fromarray(photo))
    (directory / "truncated.jpg").write_bytes(full[: len(full) // 2])
    expected["truncated.jpg"] = "truncated"

    write_png_bomb(directory / "bomb.png", BOMB_SIZE, BOMB_SIZE)
    expected["bomb.png"] = "decompression bomb"

    PIL.Image.fromarray(photo[:4, :4]).save(directory / "tiny_4x4.png")
    expected["tiny_4x4.png"] = "too small"

    ramp16 = (photo[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    PIL.Image.fromarray(ramp16).save(directory / "gray16.png")
    expected["gray16.png"] = OK

    PIL.Image.fromarray(photo[..., 1]).save(directory / "gray.png")
    expected["gray.png"] = OK

    cmyk = np.concatenate([255 - photo, np.zeros_like(photo[..., :1])], axis=2)
    PIL.Image.fromarray(cmyk, "CMYK").save(directory / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = OK

    PIL.Image.fromarray(photo).quantize(colors=64).save(directory / "palette.png")
    expected["palette.png"] = OK

    alpha = np.linspace(0, 255, photo.shape[1]).astype(np.uint8)[None, :, None].repeat(photo.shape[0], 0)
    PIL.Image.fromarray(np.concatenate([photo, alpha], axis=2), "RGBA").save(directory / "rgba.png")
    expected["rgba.png"] = OK

    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels must be turned 90 degrees clockwise for display
    PIL.Image.fromarray(photo).save(directory / "exif_rotated.jpg", quality=95, exif=exif)
    expected["exif_rotated.jpg"] = OK

    PIL.Image.fromarray(photo).save(directory / "no_face.png")
    expected["no_face.png"] = NO_FACE
    return expected


def write_png_bomb(path: str | Path, width: int, height: int) -> None:
    """Write a valid, all-black 1-bit PNG of `width` x `height` pixels in a few kilobytes."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def _smooth_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random RGB picture (JPEG-friendly, so lossy round trips stay close)."""
    coarse = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    small = PIL.Image.fromarray(coarse)
    return np.asarray(small.resize((width, height), PIL.Image.Resampling.BICUBIC))


def _jpeg_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
