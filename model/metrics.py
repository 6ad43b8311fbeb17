"""Image-quality metrics (pure functions). Convention used everywhere in model/:

* compare on luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 full range, PIL "YCbCr"), on the
  0–255 scale, after rounding the SR output to 8 bits like the service does;
* shave ``border`` (default 4 = the scale) pixels from every side;
* PSNR with peak 255; identical images give ``inf`` (callers may cap with ``cap``);
* SSIM as Wang et al. 2004 (Gaussian window σ=1.5, population covariance, data range 255) via
  ``skimage.metrics.structural_similarity``.
"""
from __future__ import annotations

import math

import numpy as np

Y_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB, uint8 (0–255) or float in [0, 1] → float64 Y on the 0–255 scale.
    A 2-D (or H, W, 1) input is taken as luma already."""
    a = np.asarray(rgb)
    scale = 255.0 if a.dtype.kind == "f" else 1.0
    a = a.astype(np.float64) * scale
    if a.ndim == 2:
        return a
    if a.shape[-1] == 1:
        return a[..., 0]
    return a[..., 0] * Y_WEIGHTS[0] + a[..., 1] * Y_WEIGHTS[1] + a[..., 2] * Y_WEIGHTS[2]


def shave(img: np.ndarray, border: int = 4) -> np.ndarray:
    if border <= 0:
        return img
    return img[border:-border, border:-border, ...]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0, cap: float | None = None) -> float:
    """PSNR in dB between two arrays on the same scale (``peak`` = max value)."""
    m = mse(a, b)
    value = math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)
    return min(value, cap) if cap is not None else value


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """SSIM of two single-channel images (Wang et al. settings)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                                       data_range=peak, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def y_psnr(sr_rgb: np.ndarray, hr_rgb: np.ndarray, border: int = 4, cap: float | None = None) -> float:
    return psnr(shave(rgb_to_y(sr_rgb), border), shave(rgb_to_y(hr_rgb), border), cap=cap)


def y_ssim(sr_rgb: np.ndarray, hr_rgb: np.ndarray, border: int = 4) -> float:
    return ssim(shave(rgb_to_y(sr_rgb), border), shave(rgb_to_y(hr_rgb), border))
