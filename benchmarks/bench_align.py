"""Throughput of the align stage: ``align_folder``'s process pool against a plain loop.

Both run the same per-image routine (load, detect landmarks, FFHQ-align, write a PNG) on the same
copies of the reference astronaut photo; the loop runs in this process, one image after the other.
Times are wall clock and include loading the dlib models (once in the loop, once per pool worker)
and starting the pool. CPU seconds (this process plus its finished workers) are printed too: on a
shared machine they show the work done even when the wall clock is skewed by other load. The per-step
costs of one image are printed first.

    python benchmarks/bench_align.py [--copies 16] [--output-size 256] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.align import align_ffhq
from pipeline.align_folder import PNG_COMPRESS_LEVEL, AlignConfig, align_folder, align_image
from pipeline.faces import detect_landmarks
from pipeline.images import load_pil_rgb

ASTRONAUT = Path(__file__).resolve().parents[1] / "tests" / "reference" / "ffhq_align" / "astronaut.png"


def _per_step_ms(path: Path, output_size: int, repeats: int = 3) -> dict[str, float]:
    """Mean milliseconds of each step of the routine on one image (models already loaded)."""
    image = load_pil_rgb(path)
    landmarks = detect_landmarks(np.asarray(image))[0]
    aligned = align_ffhq(image, landmarks, output_size)
    out = Path(tempfile.mkdtemp()) / "step.png"
    steps = {
        "load": lambda: load_pil_rgb(path),
        "detect": lambda: detect_landmarks(np.asarray(image)),
        "align": lambda: align_ffhq(image, landmarks, output_size),
        "save png": lambda: aligned.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL),
    }
    result = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        result[name] = (time.perf_counter() - start) / repeats * 1000
    shutil.rmtree(out.parent)
    return result


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have exited."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _plain_loop(raw: Path, rows: list[dict], out: Path, config: AlignConfig) -> None:
    out.mkdir(parents=True)
    for row in rows:
        image = load_pil_rgb(raw / row["file"])
        for index, face in align_image(image, config).items():
            face.save(
                out / f"{Path(row['file']).stem}_{index}.png", format="PNG", compress_level=PNG_COMPRESS_LEVEL
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=16, help="images to align (copies of the astronaut)")
    parser.add_argument("--output-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: every core)")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        rows = []
        for i in range(args.copies):
            shutil.copyfile(ASTRONAUT, raw / f"astronaut_{i:03d}.png")
            rows.append({"file": f"astronaut_{i:03d}.png", "label": None})
        config = AlignConfig(method="ffhq", output_size=args.output_size)

        start, cpu = time.perf_counter(), _cpu_seconds()
        _plain_loop(raw, rows, Path(tmp) / "loop", config)
        loop = time.perf_counter() - start, _cpu_seconds() - cpu

        steps = _per_step_ms(raw / rows[0]["file"], args.output_size)
        print(f"one {ASTRONAUT.name} (512 x 512) -> {args.output_size} px, per step:")
        print("  " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in steps.items()))

        start, cpu = time.perf_counter(), _cpu_seconds()
        out = Path(tmp) / "pool"
        align_folder(raw, rows, out, method="ffhq", output_size=args.output_size, workers=workers)
        pool = time.perf_counter() - start, _cpu_seconds() - cpu

    for name, (wall, cpu) in [("plain loop, 1 process", loop), (f"align_folder, {workers} workers", pool)]:
        print(f"{name:24s}: {args.copies / wall:6.2f} images/s ({wall:.2f} s wall, {cpu:.2f} CPU s)")
    print(
        f"speed-up: {loop[0] / pool[0]:.2f}x on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
