"""A composed group photo for tests: val faces (../shared/data/faces/val) in a row on a textured
canvas, with the ground-truth box of each face, and the bench's rule for "this face was found".

bench/faces.py composes the benchmark's random scenes; this is the small, fixed layout tests need (every
face the detector must find, at sizes the test chooses). The face box in a val crop is the bench's
FACE_BOX."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.faces import FACE_BOX  # the face in a val crop, as fractions (measured there)


def group_photo(paths: list[Path], widths: list[int], size: tuple[int, int] = (1300, 700),
                gap: int = 30) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Val faces of the given face widths in a row on a blurred, textured canvas of `size` (w, h):
    (RGB uint8, face boxes x, y, w, h in its pixels, left to right)."""
    rng = np.random.default_rng(7)
    w, h = size
    canvas = cv2.GaussianBlur(rng.uniform(40, 200, (h // 20, w // 20, 3)).astype(np.float32), (0, 0), 1)
    canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 4, (h, w, 3))
    boxes, x = [], 40
    for path, face_w in zip(paths, widths):
        crop = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32)
        s = face_w / (FACE_BOX[2] * crop.shape[1])
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        ch, cw = crop.shape[:2]
        mask = np.zeros((ch, cw), np.float32)
        cv2.ellipse(mask, ((cw / 2, ch * 0.52), (cw * 0.8, ch * 0.88), 0.0), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.7, cw * 0.035))[..., None]
        y = h // 2 - ch // 2
        canvas[y:y + ch, x:x + cw] = canvas[y:y + ch, x:x + cw] * (1 - mask) + crop * mask
        boxes.append((x + FACE_BOX[0] * cw, y + FACE_BOX[1] * ch, FACE_BOX[2] * cw, FACE_BOX[3] * ch))
        x += cw + gap
    return np.clip(canvas, 0, 255).astype(np.uint8), boxes


def found(box, detections) -> bool:
    """The bench's rule: a detection's centre inside the face box, or IoU ≥ 0.4. `detections` have x, y,
    width, height (model.faces.Face, or the API's JSON as a SimpleNamespace)."""
    x, y, w, h = box
    for d in detections:
        cx, cy = d.x + d.width / 2, d.y + d.height / 2
        ix = max(0, min(x + w, d.x + d.width) - max(x, d.x))
        iy = max(0, min(y + h, d.y + d.height) - max(y, d.y))
        if (x <= cx <= x + w and y <= cy <= y + h) or ix * iy / (w * h + d.width * d.height - ix * iy) >= 0.4:
            return True
    return False
