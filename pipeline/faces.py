"""Face detection with dlib: the frontal face detector and the 68-point shape predictor.

These are the detector and landmark model the FFHQ alignment was defined with. The predictor's weights
come from the ``face-recognition-models`` package; the dlib objects are built once per process.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import dlib
import numpy as np

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def shape_predictor_path() -> Path:
    """Path of the 68-landmark model shipped in ``face-recognition-models``.

    Located with ``find_spec`` rather than by importing the package, whose ``__init__`` needs
    ``pkg_resources``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'face-recognition-models' package is not installed; it ships " + SHAPE_PREDICTOR_FILE
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / SHAPE_PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the 'face-recognition-models' package")
    return path


@functools.cache
def _dlib_models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


def load_models() -> None:
    """Build the dlib detector and predictor now (e.g. in a worker's initializer) instead of lazily."""
    _dlib_models()


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> list[np.ndarray]:
    """The 68 (x, y) landmarks of every frontal face in an HxWx3 uint8 RGB image, largest face first.

    `upsample` is how many times dlib's detector doubles the image before searching (finds smaller
    faces, costs about 4x per step). Faces are ordered by the area of their detection box; ties keep
    the detector's order.
    """
    if not (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ):
        described = (
            f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
        )
        raise ValueError(f"detect_landmarks needs an HxWx3 uint8 RGB array, got {described}")
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    detector, predictor = _dlib_models()
    image = np.ascontiguousarray(image)
    boxes = sorted(detector(image, upsample), key=lambda box: -box.area())
    return [
        np.array([(point.x, point.y) for point in predictor(image, box).parts()], dtype=np.float64)
        for box in boxes
    ]
