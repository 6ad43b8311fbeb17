"""Face data for training/evaluation: location, decoding into memory, seed preprocessing, crops.

The data lives outside the checkout (``../shared/data`` beside the repository root, or
``$PORTRAIT_DATA_DIR``): ``faces/train`` (CelebA face JPEGs, ~180x200) and ``faces/val``.

Seed preprocessing (the original study): centre-crop to a square, resize to 176x176 (HR), then
``skimage.transform.pyramid_reduce(hr, downscale=4, channel_axis=-1)`` → 44x44 LR.
All images are kept as uint8 RGB arrays (H, W, 3) in memory; network inputs are float32 in [0, 1].
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

HR_SIZE = 176
SCALE = 4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def data_dir() -> Path:
    """Root of the shared data: ``$PORTRAIT_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("PORTRAIT_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def faces_dir(split: str) -> Path:
    return data_dir() / "faces" / split


def peers_dir() -> Path:
    return data_dir() / "peers"


def list_images(split: str, limit: int | None = None) -> list[Path]:
    folder = faces_dir(split)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} absent (set PORTRAIT_DATA_DIR or place data at ../shared/data)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:limit] if limit else files


def decode(path: Path) -> np.ndarray:
    """JPEG/PNG file → uint8 RGB (H, W, 3)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_split(split: str, limit: int | None = None, progress: bool = False) -> list[np.ndarray]:
    """Decode a split once into memory as uint8 RGB arrays (native sizes)."""
    files = list_images(split, limit)
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc=f"decode {split}", unit="img", leave=False)
    return [decode(p) for p in files]


def center_crop_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def resize_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """Square uint8 RGB resize with PIL bicubic (antialiased when shrinking)."""
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def seed_hr(img: np.ndarray, size: int = HR_SIZE) -> np.ndarray:
    """Seed HR: centre square crop resized to ``size`` x ``size`` (uint8)."""
    return resize_uint8(center_crop_square(img), size)


def seed_lr(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Seed LR exactly as the study: ``pyramid_reduce(hr, downscale=scale, channel_axis=-1)``.

    Returns float64 in [0, 1] (what skimage returns for uint8 input), 44x44 for a 176 HR.
    """
    from skimage.transform import pyramid_reduce

    return pyramid_reduce(hr, downscale=scale, channel_axis=-1)


def seed_pair(img: np.ndarray, size: int = HR_SIZE, scale: int = SCALE) -> tuple[np.ndarray, np.ndarray]:
    """(HR uint8 size², LR float [0,1] (size/scale)²) — the seed data path."""
    hr = seed_hr(img, size)
    return hr, seed_lr(hr, scale)


def random_crop(
    img: np.ndarray, rng: np.random.Generator, size: int = HR_SIZE, scale_range=(0.8, 1.0), flip: bool = True
) -> np.ndarray:
    """Random square crop of side ``U(scale_range)·min(H, W)`` anywhere in the face, resized to ``size``;
    random horizontal flip. Keeps the seed's framing statistics roughly (faces are ~180x200)."""
    h, w = img.shape[:2]
    m = min(h, w)
    lo, hi = scale_range
    s = int(round(m * rng.uniform(lo, hi)))
    s = max(min(s, m), min(size // 2, m))
    top = int(rng.integers(0, h - s + 1))
    left = int(rng.integers(0, w - s + 1))
    crop = img[top : top + s, left : left + s]
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize_uint8(np.ascontiguousarray(crop), size)


def to_tensor_batch(arrays: list[np.ndarray]):
    """List of (H, W, C) uint8 or float [0,1] arrays → float32 NCHW tensor in [0, 1]."""
    import torch

    a = np.stack(arrays)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    else:
        a = a.astype(np.float32)
    if a.ndim == 3:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def rgb_to_y_float(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) uint8/float RGB → (…, 1) float32 luma in [0, 1], BT.601 full range (PIL "YCbCr")."""
    a = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        a /= 255.0
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return y[..., None]
