"""The `quality` mode: the x8 geometric self-ensemble (Timofte et al., "Seven ways to improve
example-based single image super resolution", CVPR 2016).

The photo is upscaled in each of its 8 orientations (4 rotations, each also mirrored), every result
is turned back, and the 8 are averaged. The net sees the same pixels, only turned: it adds no
detail the photo does not hold (nothing generative), it only averages away the net's orientation
bias. 8x the time for a fraction of a dB (bench/ensemble.py measures both on val faces).
"""
from __future__ import annotations

import numpy as np

ORIENTATIONS = [(k, flip) for flip in (False, True) for k in range(4)]  # k quarter-turns, then mirror


def _turn(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(img, k, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _unturn(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    return np.rot90(img[:, ::-1] if flip else img, -k, axes=(0, 1))


def upscale_ensemble(upscaler, img: np.ndarray, progress=None) -> np.ndarray:
    """`upscaler.upscale` of `img` averaged over its 8 orientations (same shape, dtype and channels).

    `progress(done, total)` counts orientations (0..8); an exception it raises stops the work."""
    total = len(ORIENTATIONS)
    if progress:
        progress(0, total)
    acc = None
    for i, (k, flip) in enumerate(ORIENTATIONS):
        out = _unturn(upscaler.upscale(_turn(img, k, flip)), k, flip)
        acc = out.astype(np.uint32) if acc is None else acc + out  # 8 x 65535 fits in uint32
        if progress:
            progress(i + 1, total)
    return ((acc + total // 2) // total).astype(img.dtype)  # rounded mean
