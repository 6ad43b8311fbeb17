"""The `quality` mode: a self-ensemble over the orientations the net was trained on (Timofte et al.,
"Seven ways to improve example-based single image super resolution", CVPR 2016).

The photo is upscaled as it is and mirrored left to right, the mirrored result is mirrored back, and
the two are averaged. The net sees the same pixels, only mirrored: it adds no detail the photo does
not hold (nothing generative), it only averages away the net's left/right bias.

Why not the classic x8 (4 rotations, each also mirrored): a face net is not a general one. It was
trained on upright faces with left/right flips only, and on a face turned by 90°, 180° or 270° it does
0.36–0.55 dB worse than upright (100 val faces, `espcn_rb_x4` 2.0.0, per orientation), so the x8 mean
lost 0.07–0.18 dB against the plain upscale where the mirror pair gains 0.05–0.10 dB
(`python bench/ensemble.py --each`; bench/README.md). Twice the time for that gain.
"""
from __future__ import annotations

import numpy as np

ORIENTATIONS = [(0, False), (0, True)]  # (quarter-turns, mirrored): upright, and mirrored left to right


def _turn(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(img, k, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _unturn(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    return np.rot90(img[:, ::-1] if flip else img, -k, axes=(0, 1))


def upscale_ensemble(upscaler, img: np.ndarray, progress=None, orientations=ORIENTATIONS) -> np.ndarray:
    """`upscaler.upscale` of `img` averaged over `orientations` (same shape, dtype and channels).

    `progress(done, total)` counts orientations; an exception it raises stops the work."""
    total = len(orientations)
    if progress:
        progress(0, total)
    acc = None
    for i, (k, flip) in enumerate(orientations):
        out = _unturn(upscaler.upscale(_turn(img, k, flip)), k, flip)
        acc = out.astype(np.uint32) if acc is None else acc + out  # 8 x 65535 fits in uint32
        if progress:
            progress(i + 1, total)
    return ((acc + total // 2) // total).astype(img.dtype)  # rounded mean
