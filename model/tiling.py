"""Tiles that cover an image: each crop carries `margin` real pixels of context on every side, and only
its valid centre is kept, so the stitched result equals one untiled pass (see model/upscaler.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """One tile: the LR core [y0, y1) x [x0, x1) it writes, and the crop's top-left (cy, cx)."""
    y0: int
    y1: int
    x0: int
    x1: int
    cy: int
    cx: int


def plan_tiles(height: int, width: int, tile: int, margin: int) -> tuple[list[Tile], tuple[int, int]]:
    """Tiles covering the image, and the common crop size (h, w) that every tile reads."""
    rows, crop_h = _axis(height, tile, margin)
    cols, crop_w = _axis(width, tile, margin)
    return [Tile(a, b, c, d, cy, cx) for a, b, cy in rows for c, d, cx in cols], (crop_h, crop_w)


def _axis(n: int, tile: int, margin: int) -> tuple[list[tuple[int, int, int]], int]:
    count = math.ceil(n / tile)
    core = math.ceil(n / count)  # equal cores: no sliver tile that costs a whole crop
    crop = min(core + 2 * margin, n)
    spans = []
    for start in range(0, n, core):
        end = min(start + core, n)
        # Slide the crop inside the image instead of padding: context is real pixels, and at the
        # image edge the crop edge *is* the image edge, as in the untiled pass.
        spans.append((start, end, min(max(start - margin, 0), n - crop)))
    return spans, crop
