"""HR → LR degradations for training and evaluation (x4).

All functions take a uint8 RGB HR array (H, W, 3) and return LR float32 in [0, 1] of shape
(H/4, W/4, 3); ``quantize`` rounds to 8 bits like a real decoded upload. Randomness only comes
from the ``numpy.random.Generator`` passed in, so every degradation is reproducible with a seed.

Downscalers:
  pyramid  — skimage ``pyramid_reduce`` (Gaussian σ=2·s/6, truncate 4, reflect; then bilinear): the seed.
             ``pyramid_fast`` is the same filter in OpenCV (checked equal to 1e-6 in the tests).
  area     — box average (OpenCV INTER_AREA; an exact 4x4 mean for integer factors).
  bicubic  — PIL bicubic (antialiased, like MATLAB ``imresize``).
  bilinear — PIL bilinear (antialiased).
Corruptions (training mix): Gaussian blur of the HR before downscaling, Gaussian sensor noise,
JPEG re-encoding (quality 30–95), grayscale (applied to HR *and* LR so the target stays consistent).
A mix with a ``print`` section adds what happens to old prints (`model/print_damage.py`): fading and
colour casts (HR and LR), halftone screens, defocus and motion blur, film grain, double JPEG.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from model import print_damage as P

SCALE = 4


# ----------------------------------------------------------------------------------------- downscalers
def _as_float(hr: np.ndarray) -> np.ndarray:
    return hr.astype(np.float32) / 255.0 if hr.dtype == np.uint8 else hr.astype(np.float32)


def _lr_shape(hr: np.ndarray, scale: int) -> tuple[int, int]:
    return math.ceil(hr.shape[0] / scale), math.ceil(hr.shape[1] / scale)


def down_pyramid(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    from skimage.transform import pyramid_reduce

    return pyramid_reduce(_as_float(hr), downscale=scale, channel_axis=-1).astype(np.float32)


def down_pyramid_fast(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """OpenCV re-implementation of ``pyramid_reduce`` (same Gaussian, same bilinear sampling)."""
    sigma = 2 * scale / 6.0
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage truncate=4.0
    x = _as_float(hr)
    x = cv2.GaussianBlur(x, (2 * radius + 1, 2 * radius + 1), sigmaX=sigma, sigmaY=sigma,
                         borderType=cv2.BORDER_REFLECT)
    h, w = _lr_shape(hr, scale)
    return cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)


def down_area(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    h, w = _lr_shape(hr, scale)
    return cv2.resize(_as_float(hr), (w, h), interpolation=cv2.INTER_AREA)


def _down_pil(hr: np.ndarray, scale: int, resample) -> np.ndarray:
    h, w = _lr_shape(hr, scale)
    x = _as_float(hr)
    chans = [np.asarray(Image.fromarray(x[..., c], mode="F").resize((w, h), resample)) for c in range(x.shape[2])]
    return np.stack(chans, axis=-1).astype(np.float32)


def down_bicubic(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    return _down_pil(hr, scale, Image.BICUBIC)


def down_bilinear(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    return _down_pil(hr, scale, Image.BILINEAR)


DOWNSCALERS = {
    "pyramid": down_pyramid,
    "pyramid_fast": down_pyramid_fast,
    "area": down_area,
    "bicubic": down_bicubic,
    "bilinear": down_bilinear,
}


# ----------------------------------------------------------------------------------------- corruptions
def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    x = _as_float(img)
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def add_noise(lr: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Additive Gaussian noise, ``sigma`` in 8-bit levels (per channel, or shared when ``gray``)."""
    if sigma <= 0:
        return lr
    shape = lr.shape[:2] + (1,) if gray else lr.shape
    return lr + rng.normal(0.0, sigma / 255.0, size=shape).astype(np.float32)


def quantize(img: np.ndarray) -> np.ndarray:
    """float [0,1] → uint8 (round, clip)."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through a baseline JPEG (OpenCV/libjpeg, 4:2:0) at ``quality``; returns float [0,1]."""
    u8 = quantize(img) if img.dtype != np.uint8 else img
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return dec.astype(np.float32) / 255.0


def grayscale(img: np.ndarray) -> np.ndarray:
    """RGB → 3-channel gray (BT.601 luma replicated); keeps the dtype."""
    x = img.astype(np.float32)
    y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    if img.dtype == np.uint8:
        y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


# ------------------------------------------------------------------------------------- named protocols
def degrade_named(hr: np.ndarray, name: str, rng: np.random.Generator | None = None,
                  scale: int = SCALE, quantized: bool = True) -> np.ndarray:
    """Fixed evaluation protocols. Returns LR float32 [0,1] (8-bit quantised unless ``quantized=False``).

    pyramid            — the seed protocol (skimage ``pyramid_reduce``)
    area               — clean box downscale
    area_jpeg60        — box downscale, then JPEG quality 60
    bicubic_blur_noise — Gaussian blur σ=1.0 on HR, PIL bicubic down, Gaussian noise σ=4/255
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if name == "pyramid":
        lr = down_pyramid(hr, scale)
    elif name == "area":
        lr = down_area(hr, scale)
    elif name == "area_jpeg60":
        lr = jpeg(down_area(hr, scale), 60)
    elif name == "bicubic_blur_noise":
        lr = add_noise(down_bicubic(gaussian_blur(hr, 1.0), scale), 4.0, rng)
    else:
        raise ValueError(f"unknown degradation {name!r}")
    return quantize(lr).astype(np.float32) / 255.0 if quantized else np.clip(lr, 0, 1).astype(np.float32)


EVAL_DEGRADATIONS = ("pyramid", "area", "area_jpeg60", "bicubic_blur_noise")


# ------------------------------------------------------------------------------------ training mixture
DEFAULT_MIX = {
    "downscale": {"pyramid_fast": 1.0, "area": 1.0, "bicubic": 1.0},
    "blur": {"p": 0.3, "sigma": [0.3, 1.2]},
    "noise": {"p": 0.3, "sigma": [1.0, 6.0], "gray_p": 0.5},
    "jpeg": {"p": 0.5, "quality": [30, 95]},
    "gray": {"p": 0.05},
    "quantize": True,
}


def degrade_pair(hr: np.ndarray, cfg: dict | None, rng: np.random.Generator,
                 scale: int = SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Training degradation of one uint8 HR → (HR uint8 target, LR float32 [0,1]).

    ``cfg`` is the ``degrade`` section of a training config. ``{"mode": "pyramid"}`` (the seed) is the
    exact skimage protocol, unquantised like the study; ``{"mode": "mix", ...}`` samples a random
    chain (keys as in ``DEFAULT_MIX``; missing keys take those defaults).
    """
    c = describe(cfg)
    mode = c.get("mode", "pyramid")
    if mode in DOWNSCALERS:
        lr = DOWNSCALERS[mode](hr, scale)
        if c.get("quantize", False):
            lr = quantize(lr).astype(np.float32) / 255.0
        return hr, np.clip(lr, 0, 1).astype(np.float32)
    if mode != "mix":
        raise ValueError(f"unknown degrade mode {mode!r}")
    if rng.random() < c["gray"]["p"]:
        hr = grayscale(hr)
    prints = c.get("print")  # absent in older configs: their random draws stay exactly as they were
    if prints:
        hr = _damage_print(hr, prints, rng)
    x = hr
    if prints:
        x = _damage_capture(x, prints, rng)
    if rng.random() < c["blur"]["p"]:
        x = gaussian_blur(x, rng.uniform(*c["blur"]["sigma"]))
    names = list(c["downscale"].keys())
    weights = np.asarray([c["downscale"][n] for n in names], dtype=np.float64)
    down = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    lr = DOWNSCALERS[down](x, scale)
    if rng.random() < c["noise"]["p"]:
        lr = add_noise(lr, rng.uniform(*c["noise"]["sigma"]), rng, gray=rng.random() < c["noise"]["gray_p"])
    if prints and _hit(prints, "grain", rng):
        g = prints["grain"]
        lr = P.film_grain(lr, rng.uniform(*g["sigma"]), rng.uniform(*g["clump"]), rng, mono=rng.random() < 0.7)
    if c.get("quantize", True):
        lr = quantize(lr).astype(np.float32) / 255.0
    if prints and _hit(prints, "double_jpeg", rng):
        q0, q1 = prints["double_jpeg"]["quality"]
        qa, qb = (int(rng.integers(int(q0), int(q1) + 1)) for _ in range(2))
        lr = P.double_jpeg(lr, qa, qb, (int(rng.integers(0, 8)), int(rng.integers(0, 8))))
    elif rng.random() < c["jpeg"]["p"]:
        q0, q1 = c["jpeg"]["quality"]
        lr = jpeg(lr, int(rng.integers(int(q0), int(q1) + 1)))
    return hr, np.clip(lr, 0, 1).astype(np.float32)


def _hit(prints: dict, key: str, rng: np.random.Generator) -> bool:
    return key in prints and rng.random() < float(prints[key]["p"])


def _damage_print(hr: np.ndarray, prints: dict, rng: np.random.Generator) -> np.ndarray:
    """Damage to the print itself, which the target keeps: fading and a colour cast (uint8 HR out)."""
    if _hit(prints, "fade", rng):
        cast = (1 + rng.uniform(-0.02, 0.06), 1 + rng.uniform(-0.02, 0.02), 1 - rng.uniform(0.0, 0.15))
        hr = quantize(P.colour_fade(hr, rng.uniform(*prints["fade"]["amount"]), cast))
    return hr


def _damage_capture(x: np.ndarray, prints: dict, rng: np.random.Generator) -> np.ndarray:
    """What the scan or the phone adds before sampling: halftone dots, defocus or shake (target stays sharp)."""
    if _hit(prints, "halftone", rng):
        h = prints["halftone"]
        x = P.halftone(x, rng.uniform(*h["period"]), rng.uniform(0, 90), rng.uniform(*h["strength"]))
    if _hit(prints, "defocus", rng):
        x = P.defocus_blur(x, rng.uniform(*prints["defocus"]["radius"]))
    elif _hit(prints, "motion", rng):
        x = P.motion_blur(x, rng.uniform(*prints["motion"]["length"]), rng.uniform(0, 180))
    return x


def describe(cfg: dict | None) -> dict:
    """The degradation config with its defaults filled in: what `degrade_pair` applies and what a model
    card records. A "mix" takes each missing key, and each missing field of a partial one, from DEFAULT_MIX."""
    cfg = dict(cfg or {"mode": "pyramid"})
    if cfg.get("mode") != "mix":
        return cfg
    full = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_MIX.items()}
    for k, v in cfg.items():
        if isinstance(v, dict) and isinstance(full.get(k), dict):
            full[k].update(v)
        else:
            full[k] = v
    return full
