"""Robust image loading: every input image becomes an 8-bit RGB array, or a :class:`BadImageError`.

A scraped data set holds everything: empty files, HTML pages saved as ``.jpg``, downloads cut short,
CMYK scans, 16-bit PNGs, palette GIFs, phone photos rotated only by their EXIF tag, and the odd
decompression bomb. :func:`load_rgb` decodes each file completely (so a truncated file fails here and
not later inside a worker), applies the EXIF orientation and converts every PIL mode to RGB with one
documented rule per mode:

* ``RGB``: as is.
* ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``, ``RGBX``: PIL's ``convert("RGB")``
  (Adobe's inverted CMYK JPEGs are already un-inverted by PIL's decoder).
* ``RGBA``, ``RGBa``, ``LA``, ``PA`` and ``P`` with a transparent colour: alpha composited over
  **white**, so a transparent background becomes white as on a web page (premultiplied ``RGBa`` is
  un-premultiplied first).
* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``: rescaled with rounding, ``round(v * 255 / 65535)``, so
  ``v = 257 * x`` maps back to exactly ``x``; never clipped.
* ``I`` (32-bit integers): read as 16-bit values, as PIL makes of some 16-bit PNGs and TIFFs;
  values outside [0, 65535] are an error.
* ``F`` (32-bit float): taken to lie in [0, 1], scaled by 255 and rounded; values outside, or NaN,
  are an error.

Grey inputs are replicated to three equal channels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import PIL.ImageOps

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RESIZE_FILTERS",
    "BadImageError",
    "load_pil_rgb",
    "load_rgb",
    "resize_square",
    "to_rgb",
]

#: PIL's own default limit (about 0.25 GB of RGB). PIL additionally refuses anything over twice
#: ``PIL.Image.MAX_IMAGE_PIXELS`` while reading the header, whatever ``max_pixels`` says.
DEFAULT_MAX_PIXELS = 89_478_485

#: Background that alpha is composited over (see the module docstring).
ALPHA_BACKGROUND = 255

RESIZE_FILTERS: dict[str, PIL.Image.Resampling] = {
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "box": PIL.Image.Resampling.BOX,
    "nearest": PIL.Image.Resampling.NEAREST,
}

_PIL_TO_RGB = {"1", "L", "P", "CMYK", "YCbCr", "HSV", "LAB", "RGBX"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


class BadImageError(ValueError):
    """A file that cannot be used as a training image. ``reason`` is short and stable enough to
    group skipped files by (e.g. ``"zero-byte file"``, ``"truncated image"``)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep both arguments when the error crosses a process-pool boundary
        return type(self), (self.path, self.reason)


def load_pil_rgb(
    path: str | Path, *, min_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS
) -> PIL.Image.Image:
    """Open, fully decode, EXIF-orient and convert an image file to an RGB PIL image.

    Raises :class:`BadImageError` for an empty file, a file that is not an image, a truncated or
    corrupt one, a decompression bomb (more than `max_pixels` pixels), a side shorter than
    `min_size`, or pixel values that the mode's rule cannot map (see the module docstring).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise BadImageError(path, "zero-byte file")
    if PIL.ImageFile.LOAD_TRUNCATED_IMAGES:
        # Set process-wide by some libraries; it would let a half-downloaded file through as grey.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; truncated files would pass")

    try:
        with warnings.catch_warnings():
            # Our own limit below decides; PIL's warning would only duplicate it.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    reason = f"decompression bomb ({width} x {height} pixels, limit {max_pixels})"
                    raise BadImageError(path, reason)
                image.load()
                image = PIL.ImageOps.exif_transpose(image)
    except BadImageError:
        raise
    except PIL.Image.DecompressionBombError as exc:
        # Raised while parsing the header, before the size is known to us.
        limit = 2 * (PIL.Image.MAX_IMAGE_PIXELS or 0)
        raise BadImageError(path, f"decompression bomb (over PIL's hard limit of {limit} pixels)") from exc
    except PIL.UnidentifiedImageError as exc:
        raise BadImageError(path, "not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # PIL reports damaged data with all of these, depending on the plugin.
        message = str(exc)
        reason = "truncated image" if "truncated" in message else "corrupt image"
        raise BadImageError(path, f"{reason} ({type(exc).__name__}: {message})") from exc

    width, height = image.size
    if min(width, height) < min_size:
        raise BadImageError(path, f"too small ({width} x {height} pixels, minimum side {min_size})")
    return to_rgb(image, source=path)


def load_rgb(path: str | Path, *, min_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`load_pil_rgb` as an ``H x W x 3`` uint8 array."""
    return np.asarray(load_pil_rgb(path, min_size=min_size, max_pixels=max_pixels))


def resize_square(image: PIL.Image.Image, resolution: int, filter: str = "lanczos") -> PIL.Image.Image:
    """Centre-crop `image` to a square (the shorter side) and resize it to `resolution` squared."""
    if filter not in RESIZE_FILTERS:
        raise ValueError(f"unknown resize filter {filter!r}; choose one of {sorted(RESIZE_FILTERS)}")
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), RESIZE_FILTERS[filter])
    return image


def to_rgb(image: PIL.Image.Image, *, source: str | Path = "<image>") -> PIL.Image.Image:
    """Convert a decoded image of any mode to RGB by the rules in the module docstring.

    `source` names the image in a :class:`BadImageError` when its values do not fit its mode's rule.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        return _composite_over_white(image.convert("RGBA"))
    if mode in _PIL_TO_RGB:
        return image.convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "PA"):
        return _composite_over_white(image.convert("RGBA"))
    if mode in _SIXTEEN_BIT:
        return _grey_to_rgb(_rescale_16bit(np.asarray(image).astype(np.int64)))
    if mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise BadImageError(
                source, f"32-bit integer pixels outside the 16-bit range ({values.min()}..{values.max()})"
            )
        return _grey_to_rgb(_rescale_16bit(values))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if np.isnan(values).any() or (values.size and (values.min() < 0 or values.max() > 1)):
            raise BadImageError(
                source, f"float pixels outside [0, 1] ({np.nanmin(values)}..{np.nanmax(values)})"
            )
        return _grey_to_rgb(np.rint(values * 255).astype(np.uint8))
    raise BadImageError(source, f"unsupported image mode {mode!r}")


def _rescale_16bit(values: np.ndarray) -> np.ndarray:
    # Integer form of round(v * 255 / 65535); 65535 / 255 == 257 exactly.
    return ((values + 128) // 257).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")


def _composite_over_white(rgba: PIL.Image.Image) -> PIL.Image.Image:
    background = PIL.Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
    return PIL.Image.alpha_composite(background, rgba).convert("RGB")
