"""What happens to a memorial photo before it reaches us: an old print, scanned or photographed by a phone.

Each function is one physical cause, applied where it happens in the chain (see `model/degrade.py`):
on the print itself (the HR, before the camera or scanner sees it) or on the capture (the LR):

  colour_fade    the print's dyes fade and yellow: lower contrast and saturation, lifted blacks, a cast.
                 Applied to the HR *and* therefore the LR: the net must keep that tone, not invent the
                 original colours (faithfulness over invention; luma nets see the tone change only).
  halftone       a print from a magazine or newspaper is a screen of dots; the scanner samples it into moire.
  defocus_blur   a phone photo of a print, slightly out of focus (a disc, not a Gaussian).
  motion_blur    a hand-held phone photo (a short line).
  film_grain     grain of the film and the print paper, clumped (not per-pixel) and stronger in mid-tones.
  double_jpeg    saved once by the phone, once more by the website or the messenger it went through.

All inputs are float32 [0, 1] (H, W, 3) or uint8; outputs are float32 [0, 1]. Randomness comes only from
the `numpy.random.Generator` passed in.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def _f32(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32, copy=False)


def colour_fade(img: np.ndarray, amount: float, cast: tuple[float, float, float]) -> np.ndarray:
    """Blend toward a paper tone: contrast and saturation fall by `amount` (0–1), blacks rise, and
    `cast` (per-channel gains near 1, e.g. yellow = (1.03, 1.0, 0.9)) tints the whole print."""
    x = _f32(img)
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    desat = x + (gray[..., None] - x) * (0.6 * amount)  # fading dyes lose saturation first
    paper = np.float32(0.55 + 0.3 * amount)  # contrast collapses toward a light paper tone
    faded = desat * (1 - 0.5 * amount) + paper * (0.5 * amount)
    return np.clip(faded * np.asarray(cast, np.float32), 0, 1)


def halftone(img: np.ndarray, period: float, angle_deg: float, strength: float) -> np.ndarray:
    """Modulate by a rotated dot screen of `period` pixels (of the image passed in): the printed dots
    that a later downscale turns into moire. `strength` 0–1 is the dot contrast."""
    x = _f32(img)
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(angle_deg)
    u = (xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period)
    v = (-xx * math.sin(a) + yy * math.cos(a)) * (2 * math.pi / period)
    screen = (np.cos(u) * np.cos(v)).astype(np.float32)  # +1 at dot centres, -1 between
    return np.clip(x * (1 + strength * screen[..., None]), 0, 1)


def defocus_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Convolve with a uniform disc of `radius` pixels (an out-of-focus lens), anti-aliased edge."""
    x = _f32(img)
    r = int(math.ceil(radius))
    if radius <= 0 or r == 0:
        return x
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    kernel = np.clip(radius + 0.5 - np.sqrt(xx**2 + yy**2), 0, 1)
    return cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def motion_blur(img: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Convolve with a line of `length` pixels at `angle_deg` (camera shake during the exposure)."""
    x = _f32(img)
    r = int(math.ceil(length / 2))
    if length <= 1 or r == 0:
        return x
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    a = math.radians(angle_deg)
    dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
    fixed = lambda v: int(round(v * 16))  # noqa: E731  (cv2.line's shift=4: 1/16-pixel coordinates)
    cv2.line(kernel, (fixed(r - dx), fixed(r - dy)), (fixed(r + dx), fixed(r + dy)), 1.0, 1, cv2.LINE_AA,
             shift=4)
    if kernel.sum() <= 0:
        return x
    return cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def film_grain(img: np.ndarray, sigma: float, clump: float, rng: np.random.Generator,
               mono: bool = True) -> np.ndarray:
    """Grain of `sigma` 8-bit levels, spatially correlated over `clump` pixels (a Gaussian of that σ,
    renormalised so `sigma` holds), strongest in the mid-tones like silver grain."""
    x = _f32(img)
    shape = x.shape[:2] + ((1,) if mono else (x.shape[2],))
    g = rng.standard_normal(shape).astype(np.float32)
    if clump > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigmaX=clump, sigmaY=clump, borderType=cv2.BORDER_REFLECT)
        g = g.reshape(shape)
        g /= max(float(g.std()), 1e-6)
    luma = x.mean(axis=2, keepdims=True)
    weight = 4.0 * luma * (1.0 - luma) + 0.25  # 1.25 at mid-grey, 0.25 in deep shadow and highlight
    return np.clip(x + g * weight * np.float32(sigma / 255.0), 0, 1)


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """Baseline JPEG (libjpeg via OpenCV, 4:2:0) at `quality` and back: float32 [0, 1] RGB."""
    u8 = np.clip(np.rint(_f32(img) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def double_jpeg(img: np.ndarray, q1: int, q2: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Two JPEG generations. The second grid is offset by `shift` pixels (a crop between the two saves,
    as a website's cropper does), so the first generation's blocks are not re-aligned away."""
    x = jpeg_round_trip(img, q1)
    dy, dx = shift
    if dy or dx:  # re-encode a shifted view, then put it back where it was: only the grid moves
        h, w = x.shape[:2]
        pad = np.pad(x, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
        return jpeg_round_trip(pad, q2)[dy:dy + h, dx:dx + w]
    return jpeg_round_trip(x, q2)
