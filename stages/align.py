"""DVC stage `align`: data/raw/ -> data/aligned/ (FFHQ face alignment, centre crop, or as-is)."""

import json
import logging
from pathlib import Path

from pipeline.align_folder import SKIPPED_FILE, align_folder
from pipeline.download.manifest import LANDMARKS_FILE, read_manifest
from pipeline.params import Params
from pipeline.stage import run_stage
from pipeline.usable_images import NoUsableImagesError

RAW_DIR = Path("data/raw")
ALIGNED_DIR = Path("data/aligned")


def main(params: Params) -> None:
    p = params.align
    landmarks_path = RAW_DIR / LANDMARKS_FILE
    landmarks = json.loads(landmarks_path.read_text()) if landmarks_path.exists() else None
    summary = align_folder(
        RAW_DIR,
        read_manifest(RAW_DIR),
        ALIGNED_DIR,
        method=p.method,
        output_size=p.output_size,
        faces=p.faces,
        min_face_size=p.min_face_size,
        transform_size=p.transform_size,
        resize_filter=p.filter,
        workers=p.workers,
        landmarks=landmarks,
    )
    logging.info("%s", summary)
    if summary.images and not summary.outputs:  # the first stage to open the files: stop here, say why
        reasons = dict(sorted(summary.skip_reasons.items(), key=lambda item: -item[1])[:3])
        raise NoUsableImagesError(summary.images, ALIGNED_DIR / SKIPPED_FILE, reasons)


if __name__ == "__main__":
    run_stage("align", main)
