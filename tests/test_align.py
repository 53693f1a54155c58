"""FFHQ face alignment against the official script's output, and the batch driver on real files.

The reference images in ``tests/reference/ffhq_align`` (a copy of ``shared/reference``) were made by
NVlabs' ``recreate_aligned_images`` from the landmarks stored next to them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from pipeline.align import align_ffhq, detect_landmarks, ffhq_quad
from pipeline.align_folder import align_folder
from tests.bad_inputs import loadable, make_bad_input_corpus

REFERENCE = Path(__file__).resolve().parent / "reference" / "ffhq_align"

MIN_PSNR = 45.0


def _psnr(image: PIL.Image.Image | np.ndarray, reference: np.ndarray) -> float:
    diff = np.asarray(image, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    mse = np.mean(diff**2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(PIL.Image.open(REFERENCE / "astronaut.png").convert("RGB"))


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REFERENCE / "astronaut_landmarks.json").read_text())


@pytest.fixture(scope="module")
def landmarks(reference: dict) -> np.ndarray:
    return np.array(reference["landmarks68"], dtype=np.float64)


def _official(size: int) -> np.ndarray:
    return np.asarray(PIL.Image.open(REFERENCE / f"astronaut_aligned_{size}.png").convert("RGB"))


# --- detection -------------------------------------------------------------------------------------


def test_detect_landmarks_matches_reference(astronaut: np.ndarray, reference: dict) -> None:
    faces = detect_landmarks(astronaut, upsample=reference["detector_upsample"])
    assert len(faces) == len(reference["detections"]) == 2
    assert all(face.shape == (68, 2) for face in faces)
    np.testing.assert_allclose(faces[0], reference["landmarks68"], atol=1.0)

    # Largest first: the reference's chosen face has the larger detection box, and each face's
    # landmarks sit around the centre of its own box.
    areas = [(r - left) * (b - t) for left, t, r, b in reference["detections"]]
    assert reference["face"] == reference["detections"][int(np.argmax(areas))]
    by_area = sorted(reference["detections"], key=lambda d: -(d[2] - d[0]) * (d[3] - d[1]))
    for face, (left, top, right, bottom) in zip(faces, by_area, strict=True):
        centre = face.mean(axis=0)
        assert left < centre[0] < right and top < centre[1] < bottom


def test_detect_landmarks_finds_no_face_in_flat_image() -> None:
    assert detect_landmarks(np.full((200, 200, 3), 128, np.uint8)) == []


def test_detect_landmarks_rejects_non_rgb_uint8(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detect_landmarks(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detect_landmarks(astronaut[:, :, 0])


# --- alignment against the official output ----------------------------------------------------------


@pytest.mark.parametrize("size", [256, 1024])
def test_align_ffhq_matches_official(astronaut: np.ndarray, landmarks: np.ndarray, size: int) -> None:
    aligned = align_ffhq(astronaut, landmarks, size)
    assert aligned.size == (size, size) and aligned.mode == "RGB"
    psnr = _psnr(aligned, _official(size))
    print(f"align_ffhq {size}: PSNR {psnr:.2f} dB vs official")
    assert psnr >= MIN_PSNR


@pytest.mark.parametrize("size", [256, 1024])
def test_detect_then_align_matches_official(astronaut: np.ndarray, size: int) -> None:
    faces = detect_landmarks(astronaut)
    psnr = _psnr(align_ffhq(PIL.Image.fromarray(astronaut), faces[0], size), _official(size))
    print(f"detect + align_ffhq {size}: PSNR {psnr:.2f} dB vs official")
    assert psnr >= MIN_PSNR


def test_quad_closed_form() -> None:
    # Level eyes 20 px apart, mouth 20 px below their midpoint: x = (40, 0), y = (0, 40), centre
    # 10% of the way from the eyes to the mouth.
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = (40, 50), (60, 50)
    lm[48], lm[54] = (40, 70), (60, 70)
    quad, qsize = ffhq_quad(lm)
    np.testing.assert_allclose(quad, [(10, 12), (10, 92), (90, 92), (90, 12)], atol=1e-12)
    assert qsize == pytest.approx(80.0)


def test_align_undoes_rotation(astronaut: np.ndarray, landmarks: np.ndarray) -> None:
    # The same face turned by 90 degrees aligns to the same image.
    rotated = np.ascontiguousarray(np.rot90(astronaut))  # (x, y) -> (y, W - 1 - x)
    width = astronaut.shape[1]
    rotated_landmarks = np.stack([landmarks[:, 1], width - 1 - landmarks[:, 0]], axis=1)
    assert _psnr(align_ffhq(rotated, rotated_landmarks, 256), _official(256)) >= MIN_PSNR


def test_shrinks_large_photos(astronaut: np.ndarray, landmarks: np.ndarray) -> None:
    # 4x the pixels: the quad is over 4x the output, so the photo is shrunk before the warp.
    big = np.repeat(np.repeat(astronaut, 4, axis=0), 4, axis=1)
    aligned = align_ffhq(big, landmarks * 4 + 1.5, 128)
    official = PIL.Image.fromarray(_official(256)).resize((128, 128), PIL.Image.Resampling.LANCZOS)
    assert _psnr(aligned, np.asarray(official)) >= 35.0


def test_padding_keeps_the_photo_and_fills_the_outside(astronaut: np.ndarray, landmarks: np.ndarray) -> None:
    # Cut the photo just above and left of the face: the quad now leaves it, so it is padded.
    top, left = 40, 160
    cropped = np.ascontiguousarray(astronaut[top:, left:])
    shifted = landmarks - (left, top)
    size = 256
    aligned = np.asarray(align_ffhq(cropped, shifted, size), dtype=np.int16)

    # Source position of each output pixel centre (the quad is a square, so the map is affine).
    quad, qsize = ffhq_quad(shifted)
    u, v = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size)
    src = quad[0] + u[..., None] * (quad[3] - quad[0]) + v[..., None] * (quad[1] - quad[0])
    height, width = cropped.shape[:2]
    margin = 0.12 * qsize  # the edge blur reaches about 0.1 * qsize into the photo
    inside = (src[..., 0] > margin) & (src[..., 0] < width - margin)
    inside &= (src[..., 1] > margin) & (src[..., 1] < height - margin)
    outside = (src[..., 0] < 0) | (src[..., 1] < 0)
    assert inside.mean() > 0.5 and outside.mean() > 0.2

    # Away from the cut, the pixels are the official ones; beyond it, filled (not black).
    assert np.abs(aligned - _official(size))[inside].max() <= 1
    assert (aligned[outside].sum(axis=-1) < 15).mean() < 0.01


def test_padding_of_flat_photo_is_flat(landmarks: np.ndarray) -> None:
    # Reflection, blur and median of one colour are that colour: the whole output is flat, even
    # where the quad is far outside the photo.
    colour = (30, 120, 210)
    flat = np.empty((160, 160, 3), np.uint8)
    flat[:] = colour
    quad, _ = ffhq_quad(landmarks - (170, 70))
    assert quad.min() < -50
    aligned = np.asarray(align_ffhq(flat, landmarks - (170, 70), 64))
    assert (aligned == colour).all()


def test_align_ffhq_rejects_bad_arguments(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="68x2"):
        align_ffhq(astronaut, np.zeros((5, 2)), 64)
    with pytest.raises(ValueError, match="transform_size"):
        align_ffhq(astronaut, np.zeros((68, 2)), 64, transform_size=32)


# --- the batch driver ------------------------------------------------------------------------------


def _write_raw_folder(raw: Path, astronaut: np.ndarray) -> tuple[list[dict], dict[str, str]]:
    """Two copies of the astronaut with the same stem and a JPEG one, among the shared corpus of awkward
    and broken files. Returns the raw manifest rows and the corpus' expected outcomes."""
    expected = make_bad_input_corpus(raw)
    for sub in ("a", "b"):
        (raw / sub).mkdir()
        PIL.Image.fromarray(astronaut).save(raw / sub / "astronaut.png")
    PIL.Image.fromarray(astronaut).save(raw / "astronaut.jpg", quality=95)
    files = ["a/astronaut.png", *sorted(expected), "b/astronaut.png", "astronaut.jpg"]
    return [{"file": f, "label": i % 3 if i % 2 else None} for i, f in enumerate(files)], expected


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_align_folder_skips_bad_files_and_is_deterministic(tmp_path: Path, astronaut: np.ndarray) -> None:
    raw = tmp_path / "raw"
    rows, expected = _write_raw_folder(raw, astronaut)
    serial = align_folder(raw, rows, tmp_path / "serial", method="ffhq", output_size=256, workers=1)
    pooled = align_folder(raw, rows, tmp_path / "pooled", method="ffhq", output_size=256, workers=2)
    assert serial == pooled
    assert (serial.images, serial.outputs, serial.skipped) == (len(rows), 3, len(expected))

    manifest = _read_jsonl(tmp_path / "pooled" / "manifest.jsonl")
    assert manifest == _read_jsonl(tmp_path / "serial" / "manifest.jsonl")
    labels = {row["file"]: row["label"] for row in rows}
    assert manifest == [
        {"file": f"images/{stem}_0.png", "source": source, "label": labels[source], "face_index": 0}
        for stem, source in [("a/astronaut", "a/astronaut.png"), ("b/astronaut", "b/astronaut.png")]
        + [("astronaut", "astronaut.jpg")]
    ]
    for row in manifest:
        pooled_bytes = (tmp_path / "pooled" / row["file"]).read_bytes()
        assert pooled_bytes == (tmp_path / "serial" / row["file"]).read_bytes()
    png = PIL.Image.open(tmp_path / "pooled" / "images/a/astronaut_0.png")
    assert _psnr(png.convert("RGB"), _official(256)) >= MIN_PSNR

    # Every corpus file is skipped, in manifest order: the loadable ones hold no face.
    skipped = _read_jsonl(tmp_path / "pooled" / "skipped.jsonl")
    assert [row["file"] for row in skipped] == sorted(expected)
    for row in skipped:
        outcome = expected[row["file"]]
        assert row["reason"] == "no face detected" if loadable(outcome) else outcome in row["reason"]


def test_align_folder_center_crop_passes_every_loadable_file(tmp_path: Path) -> None:
    expected = make_bad_input_corpus(tmp_path / "raw")
    rows = [{"file": f, "label": None} for f in sorted(expected)]
    summary = align_folder(
        tmp_path / "raw", rows, tmp_path / "out", method="center_crop", output_size=32, workers=1
    )
    sources = [row["source"] for row in _read_jsonl(tmp_path / "out" / "manifest.jsonl")]
    assert sources == [f for f in sorted(expected) if loadable(expected[f])]
    skipped = {row["file"]: row["reason"] for row in _read_jsonl(tmp_path / "out" / "skipped.jsonl")}
    assert skipped.keys() == {f for f, outcome in expected.items() if not loadable(outcome)}
    assert all(expected[f] in reason for f, reason in skipped.items())
    assert summary.skip_reasons and sum(summary.skip_reasons.values()) == len(skipped)
    for file in sources:
        image = PIL.Image.open(tmp_path / "out" / "images" / f"{Path(file).stem}_0.png")
        assert (image.size, image.mode) == ((32, 32), "RGB")


def test_align_folder_all_faces_above_min_size(tmp_path: Path, astronaut: np.ndarray) -> None:
    PIL.Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    rows = [{"file": "astronaut.png", "label": None}]
    sizes = [ffhq_quad(face)[1] for face in detect_landmarks(astronaut)]
    assert len(sizes) == 2 and sizes[1] < sizes[0]

    def faces_for(min_face_size: float) -> list[int]:
        out = tmp_path / f"min{min_face_size:.0f}"
        align_folder(
            tmp_path, rows, out, method="ffhq", output_size=64, faces="all", min_face_size=min_face_size
        )
        return [row["face_index"] for row in _read_jsonl(out / "manifest.jsonl")]

    assert faces_for(0) == [0, 1]
    assert faces_for((sizes[0] + sizes[1]) / 2) == [0]
    assert faces_for(sizes[0] + 1) == []
    skipped = _read_jsonl(tmp_path / f"min{sizes[0] + 1:.0f}" / "skipped.jsonl")
    assert skipped[0]["file"] == "astronaut.png" and "min_face_size" in skipped[0]["reason"]


def test_align_folder_uses_given_landmarks(
    tmp_path: Path, astronaut: np.ndarray, landmarks: np.ndarray
) -> None:
    # The metadata's landmarks are used as they are: a photo dlib finds nothing in is still aligned,
    # and the astronaut aligns to the official image without detection.
    PIL.Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    PIL.Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(tmp_path / "flat.png")
    rows = [{"file": "astronaut.png", "label": None}, {"file": "flat.png", "label": None}]
    given = {"astronaut.png": landmarks.tolist(), "flat.png": (landmarks - 100).tolist()}
    summary = align_folder(tmp_path, rows, tmp_path / "out", method="ffhq", output_size=256, landmarks=given)
    assert (summary.outputs, summary.skipped) == (2, 0)
    aligned = PIL.Image.open(tmp_path / "out" / "images" / "astronaut_0.png").convert("RGB")
    assert _psnr(aligned, _official(256)) >= MIN_PSNR

    with pytest.raises(ValueError, match="flat.png"):
        align_folder(
            tmp_path, rows, tmp_path / "bad", method="ffhq", output_size=64, landmarks={"flat.png": [1, 2]}
        )


def test_align_folder_center_crop_and_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    PIL.Image.fromarray(photo).save(tmp_path / "wide.png")
    rows = [{"file": "wide.png", "label": "x"}]

    align_folder(tmp_path, rows, tmp_path / "crop", method="center_crop", output_size=30, resize_filter="box")
    cropped = np.asarray(PIL.Image.open(tmp_path / "crop" / "images" / "wide_0.png"), dtype=np.float64)
    centre = photo[:, 20:80].astype(np.float64)
    block_means = centre.reshape(30, 2, 30, 2, 3).mean(axis=(1, 3))
    # PIL resizes rows, rounds to 8 bits, then resizes columns: within 1 of the exact 2x2 means.
    assert np.abs(cropped - block_means).max() <= 1.0

    align_folder(tmp_path, rows, tmp_path / "none", method="none", output_size=30)
    passed = np.asarray(PIL.Image.open(tmp_path / "none" / "images" / "wide_0.png"))
    np.testing.assert_array_equal(passed, photo)
    assert _read_jsonl(tmp_path / "none" / "manifest.jsonl")[0]["label"] == "x"


def test_align_folder_rejects_bad_manifests(tmp_path: Path) -> None:
    for rows, message in [
        ([{"file": "../outside.png", "label": None}], "relative path inside"),
        ([{"file": "/abs.png", "label": None}], "relative path inside"),
        ([{"file": "a.png", "label": 0}, {"file": "a.png", "label": 1}], "more than once"),
        ([{"label": 0}], "no 'file'"),
    ]:
        with pytest.raises(ValueError, match=message):
            align_folder(tmp_path, rows, tmp_path / "out", method="none", output_size=8)


def test_align_folder_names_do_not_clash(tmp_path: Path) -> None:
    # Same stem in one folder: each keeps its suffix in the output name.
    for name in ("x.png", "x.jpg"):
        PIL.Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(tmp_path / name)
    rows = [{"file": "x.png", "label": None}, {"file": "x.jpg", "label": None}]
    align_folder(tmp_path, rows, tmp_path / "out", method="none", output_size=16, workers=1)
    files = [row["file"] for row in _read_jsonl(tmp_path / "out" / "manifest.jsonl")]
    assert files == ["images/x.png_0.png", "images/x.jpg_0.png"]
