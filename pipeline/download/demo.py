"""The embedded demo data set: stylised flowers drawn from a seeded random number generator.

Each image is a flower on a plain, gradient or radial background: a ring (sometimes two) of petals of one
shape (ellipse, pointed, spatulate), a centre disc, and sometimes a stem with a leaf, at a random
position, size and rotation. Shapes and colours are bold so that a small GAN learns them in minutes on a
CPU, and varied enough that it has something to learn. The label of an image is the colour family of its
petals, for conditional training.

Image `i` depends only on ``(seed, i)`` (``numpy.random.default_rng([seed, i])``), and PNGs are written
with fixed options and no metadata, so the same parameters give the same bytes for any number of
workers. Shapes are drawn at up to 4x the resolution and reduced with Lanczos, for anti-aliased edges.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
from tqdm import tqdm

from pipeline.download.manifest import (
    IMAGES_DIR,
    begin_output,
    manifest_row,
    summary,
    write_labels,
    write_manifest,
)
from pipeline.files import atomic_write_bytes
from pipeline.workers import process_map

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColourFamily:
    """Petal colours: hue (degrees, may wrap below 0), saturation and value ranges in HSV."""

    name: str
    hue: tuple[float, float]
    saturation: tuple[float, float]
    value: tuple[float, float]


COLOUR_FAMILIES: tuple[ColourFamily, ...] = (
    ColourFamily("red", (-8, 8), (0.75, 0.95), (0.75, 0.95)),
    ColourFamily("orange", (22, 36), (0.8, 1.0), (0.9, 1.0)),
    ColourFamily("yellow", (48, 58), (0.75, 0.95), (0.92, 1.0)),
    ColourFamily("pink", (320, 340), (0.45, 0.65), (0.9, 1.0)),
    ColourFamily("purple", (268, 290), (0.6, 0.85), (0.6, 0.85)),
    ColourFamily("blue", (205, 225), (0.7, 0.9), (0.75, 0.95)),
    ColourFamily("white", (0, 360), (0.0, 0.08), (0.93, 1.0)),
)
PETAL_SHAPES = ("ellipse", "pointed", "spatulate")
CENTRE_COLOURS = ((250, 200, 30), (120, 70, 30), (60, 35, 20), (240, 140, 20), (30, 30, 30))
MAX_CANVAS = 2048  # the supersampled canvas is at most this wide


def generate_demo(
    out_dir: str | os.PathLike[str],
    *,
    count: int = 2000,
    resolution: int = 64,
    seed: int = 0,
    labels: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Draw `count` flowers of `resolution` x `resolution` pixels into ``out_dir/images/`` and write the
    manifest (and ``labels.json`` when `labels`). `workers`: processes; None uses every core once there
    are a few hundred images. The output does not depend on it."""
    if count < 1:
        raise ValueError(f"data.demo.count must be at least 1, got {count}")
    if resolution < 8:
        raise ValueError(f"data.demo.resolution must be at least 8, got {resolution}")
    if seed < 0:
        raise ValueError(f"data.demo.seed must be non-negative, got {seed}")
    out_dir = Path(out_dir)
    begin_output(out_dir)
    shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)
    files = [_file_name(index, count) for index in range(count)]
    for folder in sorted({str(Path(file).parent) for file in files}):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    work = partial(_write_flower, out_dir=out_dir, resolution=resolution, seed=seed)
    if workers is None:  # a process pool pays off from a few hundred images on
        workers = min(os.cpu_count() or 1, max(1, count // 256))
    workers = max(1, min(workers, count))
    results = []
    with tqdm(total=count, desc=f"demo flowers ({resolution}px)", unit="img", dynamic_ncols=True) as bar:
        for result in _map(work, list(enumerate(files)), workers):
            results.append(result)
            bar.update()

    rows = [
        manifest_row(
            file, size, sha256, family if labels else None, None, colour=COLOUR_FAMILIES[family].name
        )
        for file, (size, sha256, family) in zip(files, results, strict=True)
    ]
    write_manifest(out_dir, rows)
    if labels:
        write_labels(out_dir, {i: {"name": family.name} for i, family in enumerate(COLOUR_FAMILIES)}, rows)
    log.info("drew %d demo flowers at %dpx (seed %d)", count, resolution, seed)
    return summary("demo", rows, classes=len(COLOUR_FAMILIES) if labels else None)


def _file_name(index: int, count: int) -> str:
    """``images/<thousands>/<index>.png``, zero-padded to the same width for every index."""
    width = max(5, len(str(count - 1)))
    return f"{IMAGES_DIR}/{index - index % 1000:0{width}d}/{index:0{width}d}.png"


def _map(work: partial, items: Sequence[tuple[int, str]], workers: int) -> Iterator[tuple[int, str, int]]:
    if workers == 1:
        yield from map(work, items)
        return
    # Spawned workers that cannot start raise WorkerPoolError (multiprocessing.Pool would hang).
    yield from process_map(work, items, workers, chunksize=32, what="the demo data set")


def _write_flower(
    item: tuple[int, str], *, out_dir: Path, resolution: int, seed: int
) -> tuple[int, str, int]:
    index, file = item
    image, family = draw_flower(np.random.default_rng([seed, index]), resolution)
    data = encode_png(image)
    atomic_write_bytes(out_dir / file, data)
    return len(data), hashlib.sha256(data).hexdigest(), family


def encode_png(image: PIL.Image.Image) -> bytes:
    """PNG bytes with fixed options and no metadata chunks, hence the same bytes for the same pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def draw_flower(rng: np.random.Generator, resolution: int) -> tuple[PIL.Image.Image, int]:
    """One RGB flower image and the index of its colour family in :data:`COLOUR_FAMILIES`."""
    scale = max(1, min(4, MAX_CANVAS // resolution))
    size = resolution * scale
    family = int(rng.integers(len(COLOUR_FAMILIES)))

    # The backdrop is smooth: drawn at the output resolution and enlarged, it loses nothing.
    canvas = PIL.Image.fromarray(_background(rng, resolution)).resize(
        (size, size), PIL.Image.Resampling.BILINEAR
    )
    draw = PIL.ImageDraw.Draw(canvas)
    centre = size * (0.5 + rng.normal(0.0, 0.05, 2).clip(-0.1, 0.1))
    radius = size * rng.uniform(0.26, 0.42)
    if rng.random() < 0.5:
        _draw_stem(draw, rng, centre, radius, size)

    petals = int(rng.integers(4, 13))
    shape = PETAL_SHAPES[int(rng.integers(len(PETAL_SHAPES)))]
    width = rng.uniform(0.18, 0.32) if shape != "spatulate" else rng.uniform(0.22, 0.34)
    width *= min(1.0, 7.0 / petals) ** 0.5  # many petals: narrower, so neighbours stay apart
    angle = rng.uniform(0, 2 * np.pi)
    colour = _hsv_colour(rng, COLOUR_FAMILIES[family])
    outline = tuple(int(c * 0.6) for c in colour)
    line = max(1, round(scale * resolution / 96))
    _draw_ring(draw, rng, centre, radius, petals, angle, shape, width, colour, outline, line)
    if rng.random() < 0.4:  # an inner ring between the outer petals, a shade lighter or darker
        shade = rng.choice([0.78, 1.18])
        inner = tuple(int(min(255, c * shade)) for c in colour)
        _draw_ring(
            draw,
            rng,
            centre,
            radius * 0.62,
            petals,
            angle + np.pi / petals,
            shape,
            width,
            inner,
            outline,
            line,
        )

    disc = radius * rng.uniform(0.16, 0.28)
    centre_colour = CENTRE_COLOURS[int(rng.integers(len(CENTRE_COLOURS)))]
    ring = tuple(int(c * 0.55) for c in centre_colour)
    draw.ellipse(_box(centre, disc), fill=centre_colour, outline=ring, width=line * 2)
    if rng.random() < 0.5:  # seeds: a ring of dots on the disc
        for phi in np.linspace(0, 2 * np.pi, 10, endpoint=False) + rng.uniform(0, np.pi):
            dot = centre + 0.55 * disc * np.array([np.cos(phi), np.sin(phi)])
            draw.ellipse(_box(dot, disc * 0.12), fill=ring)

    image = canvas.resize((resolution, resolution), PIL.Image.Resampling.LANCZOS) if scale > 1 else canvas
    return image, family


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted backdrop (saturation at most 0.35, below every coloured petal): plain, linear or radial."""
    hue = rng.uniform(0, 360)
    first = np.array(_rgb(hue, rng.uniform(0.1, 0.35), rng.uniform(0.25, 0.85)), dtype=np.float32)
    second = np.array(_rgb(hue + rng.uniform(-60, 60), rng.uniform(0.1, 0.35), rng.uniform(0.25, 0.85)))
    kind = rng.integers(3)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    if kind == 0:
        t = np.zeros_like(x)
    elif kind == 1:
        direction = rng.uniform(0, 2 * np.pi)
        t = (x * np.cos(direction) + y * np.sin(direction)) / np.sqrt(0.5) + 0.5
    else:
        t = np.sqrt(x**2 + y**2) / np.sqrt(0.5)
    t = np.clip(t, 0, 1)[..., None]
    return np.rint(first * (1 - t) + second.astype(np.float32) * t).astype(np.uint8)


def _draw_stem(
    draw: PIL.ImageDraw.ImageDraw, rng: np.random.Generator, centre: np.ndarray, radius: float, size: int
) -> None:
    green = _rgb(rng.uniform(95, 140), rng.uniform(0.55, 0.8), rng.uniform(0.35, 0.6))
    bottom = np.array([centre[0] + rng.uniform(-0.15, 0.15) * size, size * 1.05])
    draw.line([tuple(centre), tuple(bottom)], fill=green, width=max(2, round(radius * 0.09)))
    along = rng.uniform(0.55, 0.8)
    base = centre + (bottom - centre) * along
    side = rng.choice([-1.0, 1.0])
    leaf_axis = np.array([side * np.cos(0.5), -np.sin(0.5)])
    outline = _petal_outline(base, leaf_axis, radius * 0.7, 0.28, "pointed")
    draw.polygon(outline.ravel().tolist(), fill=green)


def _draw_ring(
    draw: PIL.ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    radius: float,
    petals: int,
    angle: float,
    shape: str,
    width: float,
    colour: tuple[int, int, int],
    outline: tuple[int, ...],
    line: int,
) -> None:
    for k in range(petals):
        phi = angle + 2 * np.pi * k / petals + rng.normal(0, 0.04)
        length = radius * rng.uniform(0.92, 1.05)
        axis = np.array([np.cos(phi), np.sin(phi)])
        jitter = rng.uniform(0.93, 1.0)
        fill = tuple(int(c * jitter) for c in colour)
        points = _petal_outline(centre, axis, length, width, shape).ravel().tolist()
        draw.polygon(points, fill=fill, outline=outline, width=line)


def _petal_outline(base: np.ndarray, axis: np.ndarray, length: float, width: float, shape: str) -> np.ndarray:
    """Polygon of a petal from `base` along the unit vector `axis`; `width` is its greatest half-width as
    a fraction of `length`."""
    t = np.linspace(0.0, 1.0, 24)
    if shape == "ellipse":
        profile = np.sqrt(np.clip(1 - (2 * t - 1) ** 2, 0, 1))
    elif shape == "pointed":  # widest a third of the way out, tapering to a point
        profile = np.sin(np.pi * t**0.75) * (1 - t) ** 0.15
    elif shape == "spatulate":  # narrow at the base, wide and round at the tip
        profile = np.sqrt(np.clip(t, 0, 1)) * np.sqrt(np.clip(1 - t**6, 0, 1))
    else:
        raise ValueError(f"unknown petal shape {shape!r}")
    half = profile * width * length
    normal = np.array([-axis[1], axis[0]])
    spine = base + np.outer(t * length, axis)
    left = spine + half[:, None] * normal
    right = spine - half[:, None] * normal
    return np.concatenate([left, right[::-1]])


def _hsv_colour(rng: np.random.Generator, family: ColourFamily) -> tuple[int, int, int]:
    return _rgb(rng.uniform(*family.hue), rng.uniform(*family.saturation), rng.uniform(*family.value))


def _rgb(hue_degrees: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_degrees / 360.0) % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _box(centre: np.ndarray, radius: float) -> tuple[float, float, float, float]:
    return (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
