"""Face alignment as FFHQ defines it.

:func:`align_ffhq` follows ``recreate_aligned_images`` of NVlabs/ffhq-dataset step by step (with its
defaults: level rotation, blur padding, no random shift), so an image aligned here matches the official
FFHQ image made from the same landmarks. The steps, in the script's order:

1. an oriented square (the "quad") from the eye centres and mouth corners;
2. when the quad is at least 4x the output size, shrink the photo by an integer factor with Lanczos,
   so the bilinear warp below does not skip source pixels;
3. crop to the quad plus a border;
4. where the quad leaves the photo, reflect-pad it and fade the padding (and a strip of the photo's
   edge) into a blurred copy and, further out, into the median colour, so no hard mirror edge shows;
5. bilinear quad transform to `transform_size` (4x the output by default), Lanczos down to the output.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import scipy.ndimage

from pipeline.faces import detect_landmarks

__all__ = ["align_ffhq", "detect_landmarks", "face_size", "ffhq_quad"]

_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented crop square of a face: its corners (4x2, in order top-left, bottom-left,
    bottom-right, top-right of the output) and its side length, both in source pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68x2 face landmarks, got an array of shape {lm.shape}")
    eye_left = lm[_LEFT_EYE].mean(axis=0)
    eye_right = lm[_RIGHT_EYE].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[_MOUTH_LEFT] + lm[_MOUTH_RIGHT]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # x: the horizontal half-axis, levelled between the eye line and the perpendicular of eye-to-mouth.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    center = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([center - x - y, center - x + y, center + x + y, center + x - y])
    return quad, float(np.hypot(*x) * 2)


def face_size(landmarks: np.ndarray) -> float:
    """Side, in source pixels, of the FFHQ crop square of a face: how much detail its aligned image has."""
    return ffhq_quad(landmarks)[1]


def _to_pil_rgb(image: np.ndarray | PIL.Image.Image) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"expected an HxWx3 uint8 RGB image, got a {array.dtype} array of shape {array.shape}"
        )
    return PIL.Image.fromarray(array)


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """Integer box (left, top, right, bottom) that encloses the quad."""
    return (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )


def _blur_pad(image: PIL.Image.Image, pad: np.ndarray, qsize: float) -> PIL.Image.Image:
    """Reflect-pad by `pad` (left, top, right, bottom), then fade the padding towards a blurred copy and,
    further out, towards the median colour."""
    left, top, right, bottom = (int(p) for p in pad)
    img = np.pad(np.asarray(image, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = img.shape
    # 0 inside the photo, rising to 1 at the outer edge of the padding.
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    mask_x = 1.0 - np.minimum(xs / left, (w - 1 - xs) / right)
    mask_y = 1.0 - np.minimum(ys / top, (h - 1 - ys) / bottom)
    mask = np.maximum(mask_y[:, None], mask_x[None, :])[:, :, None]
    blur = qsize * 0.02
    img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return PIL.Image.fromarray(np.uint8(np.clip(np.rint(img), 0, 255)))


def align_ffhq(
    image: np.ndarray | PIL.Image.Image,
    landmarks: np.ndarray,
    output_size: int,
    transform_size: int | None = None,
) -> PIL.Image.Image:
    """The FFHQ-aligned `output_size` square of the face with these 68 (x, y) landmarks.

    `image` is an HxWx3 uint8 RGB array or a PIL image; `transform_size` (default 4 x `output_size`)
    is the resolution of the intermediate bilinear warp.
    """
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    transform_size = 4 * output_size if transform_size is None else transform_size
    if transform_size < output_size:
        raise ValueError(f"transform_size ({transform_size}) must be at least output_size ({output_size})")
    img = _to_pil_rgb(image)
    quad, qsize = ffhq_quad(landmarks)

    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(size, PIL.Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bounds(quad)
    crop = (
        max(left - border, 0),
        max(top - border, 0),
        min(right + border, img.width),
        min(bottom + border, img.height),
    )
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[:2]

    left, top, right, bottom = _bounds(quad)
    pad = np.array(
        [
            max(-left + border, 0),
            max(-top + border, 0),
            max(right - img.width + border, 0),
            max(bottom - img.height + border, 0),
        ]
    )
    if pad.max() > border - 4:
        # At least one pixel, so the fade mask is defined even for a degenerate, pixel-sized face.
        pad = np.maximum(pad, max(int(np.rint(qsize * 0.3)), 1))
        img = _blur_pad(img, pad, qsize)
        quad += pad[:2]

    img = img.transform(
        (transform_size, transform_size),
        PIL.Image.Transform.QUAD,
        (quad + 0.5).flatten(),
        PIL.Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        img = img.resize((output_size, output_size), PIL.Image.Resampling.LANCZOS)
    return img
