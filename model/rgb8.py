"""The 8-bit fast path of a luma residual net on CPU: what almost every uploaded photo takes.

A luma ESPCN's output is Y' = bicubic(Y) + r, chroma bicubic, then YCbCr → RGB. BT.601's YCbCr → RGB
matrix has Y's column = (1, 1, 1), and a bicubic upscale commutes with any per-pixel linear map (its
weights sum to 1, so Cb/Cr's offsets pass through), so the whole result is

    RGB_out = bicubic(RGB) + (r, r, r)

with no colour conversion on the 16x larger output at all. Here that becomes:

* the residual r: the net in OpenVINO on 8-bit RGB crops, Y = (0.299 R + 0.587 G + 0.114 B) / 255 as a
  1x1 conv in the graph, and ×255 folded into the last conv, so r comes out in 8-bit levels, as the
  last conv's NCHW planes;
* per tile, the base: one `cv2.resize(INTER_CUBIC)` of the tile's crop in int16 quarter levels;
* per tile, r rounded and pixel-shuffled (`shuffle_round`), added to the base's colour channels and
  saturated to 8 bits straight into the output (`finish_tile`): OpenCV passes over int16/uint8, shared
  out among the upscaler's threads (`Workers`).

The two roundings (the base to 8 bits, then r) differ from the float path by at most one level on a
pixel; bench/speed.py --psnr measures the cost on val faces (≤ 0.005 dB, bench/README.md). 16-bit
photos, RGB nets and the torch backend keep the float path in model/upscaler.py.
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor, wait
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np
from torch import nn

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601 full range, as RGB_TO_YCC's first row (model/images.py)


def fold_rgb8(body: nn.Sequential) -> nn.Sequential:
    """A copy of a luma net's layers that reads 8-bit RGB (0–255) and emits r in 8-bit levels: a 1x1
    conv computes Y (BT.601, /255) first, and the last conv's weights take the ×255.

    Y could fold into the first conv's weights instead (3 input channels), but that triples the first
    conv's work: no faster with AMX (6.2 vs 5.5 ms of a 512² crop's 25 ms) and 1.8x slower in fp32
    without it (31 ms), where bf16 and int8 convolutions are not much faster than fp32."""
    import torch

    folded = copy.deepcopy(body).float().cpu()
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    if convs[0].in_channels != 1:
        raise ValueError(f"the 8-bit path is for luma nets (1 input channel), not {convs[0].in_channels}")
    luma = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        luma.weight.copy_(torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).reshape(1, 3, 1, 1) / 255.0)
        convs[-1].weight.mul_(255.0)
        convs[-1].bias.mul_(255.0)
    return nn.Sequential(luma, *folded)


SUBLEVELS = 4  # the base and r are added in quarter levels (int16), so each rounds by ≤ 1/8 level


class Workers:
    """Runs a tile's OpenCV passes split into `count` parts on that many threads (OpenCV releases the
    GIL), or in the calling thread when `count` is 1. Only `resize` of these passes has threads of its
    own in OpenCV; the shuffle's conversions and merges and the saturating add are single-threaded
    (`python -m bench rgb8_tail` times the tail both ways; bench/README.md)."""

    def __init__(self, count: int):
        self.count = max(1, int(count))
        self._pool = ThreadPoolExecutor(self.count, thread_name_prefix="rgb8") if self.count > 1 else None

    def each(self, fn: Callable[[int], None], parts: int) -> None:
        """fn(0) … fn(parts − 1); the first exception is raised here once all have ended."""
        if self._pool is None or parts < 2:
            for part in range(parts):
                fn(part)
            return
        futures = [self._pool.submit(fn, part) for part in range(parts)]
        wait(futures)  # all of them: a part still running must not outlive the buffers it writes
        for future in futures:
            future.result()


# Output pixels of a tile (0.75 M, a ~222² photo) below which threads cost more than they save.
SPLIT_MIN_PIXELS = 3 << 18


@lru_cache(maxsize=None)
def _shared(count: int) -> Workers:
    return Workers(count)


def workers(count: int, pixels: int) -> Workers:
    """Where the tail of a tile of `pixels` output pixels runs: one shared `Workers` per thread count
    in a process (the Upscaler's `threads`, bounded by TORCH_THREADS in the worker, so upscalers built
    side by side do not each start threads), or the calling thread for a small tile (split in two,
    the tail of a 192² photo took 0.4 ms longer, a 224² photo's 1.0 ms less; bench/README.md)."""
    return _shared(count) if count > 1 and pixels >= SPLIT_MIN_PIXELS else SERIAL


SERIAL = Workers(1)


def shuffle_round(planes: np.ndarray, scale: int, scratch: "Scratch", gain: float = SUBLEVELS,
                  on: Workers = SERIAL) -> np.ndarray:
    """(s², h, w) float sub-pixel residual (PixelShuffle's channel order, the graph's NCHW output or a
    window of it) → (s·h, s·w) int16 of round(gain · r), in `scratch`'s buffer (valid until its next
    use). Each plane is rounded to int16, then each output row phase i of an LR pixel row is one
    `cv2.merge` of planes i·s … i·s+s−1 (its s sub-pixels side by side) written through a strided view:
    SIMD copies, no element-wise 6-D transpose. Asking OpenVINO for NHWC instead added a reference-kernel
    Transpose to the int8 graph (4.1–4.6 ms of a 512² crop) and a slower shuffle here (bench/README.md).
    Planes and phases are shared out among `on`'s threads."""
    planes_n, h, w = planes.shape
    if planes_n != scale * scale:
        raise ValueError(f"expected {scale * scale} sub-pixel planes, got {planes_n}")
    r16 = scratch.get("planes", (planes_n, h, w))
    out = scratch.get("shuffled", (h * scale, w * scale))
    phases = out.reshape(h, scale, w * scale)  # [y, i, x·s + j] = output pixel (s·y + i, s·x + j)

    def round_planes(part: int) -> None:
        for k in range(part, planes_n, on.count):  # 2-D views: OpenCV reads a window's row stride as is
            cv2.addWeighted(planes[k], gain, planes[k], 0.0, 0.0, dst=r16[k], dtype=cv2.CV_16S)

    def merge_phases(part: int) -> None:
        for i in range(part, scale, on.count):
            cv2.merge(list(r16[i * scale:(i + 1) * scale]), dst=phases[:, i, :].reshape(h, w, scale))

    on.each(round_planes, on.count)
    on.each(merge_phases, min(on.count, scale))
    return out


class Scratch:
    """int16 buffers for `finish_tile`, kept between tiles and photos: fresh 25 MB arrays per 512² tile
    cost more in page faults (~10 ms) than the arithmetic done in them."""

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = self._buffers[name] = np.empty(size, np.int16)
        return buf[:size].reshape(shape)


def finish_tile(dst: np.ndarray, crop: np.ndarray, r16: np.ndarray, offset: tuple[int, int],
                scale: int, scratch: Scratch, on: Workers = SERIAL) -> None:
    """dst (H, W, C) uint8 ← bicubic(crop) + r on the colour channels, bicubic alpha, for one tile.

    `crop` (h, w, C) uint8 is the tile's LR crop with its margins, `offset` where the tile's valid
    centre starts in the crop's upscale, `r16` the residual there (`shuffle_round`). The bicubic base is
    int16 in quarter levels, so its overshoot past 0 and 255 (next to dark or bright edges, which the
    net's residual pulls back) survives until the sum is saturated once (8-bit bases lost up to 19
    levels at 0.3 % of pixels). All steps are OpenCV passes over int16/uint8; `dst` may be a view into
    the output with a row stride, which OpenCV writes through. After the resize (threaded by OpenCV),
    bands of rows are shared out among `on`'s threads: each pass reads and writes only its band."""
    height, width = r16.shape
    oy, ox = offset
    channels = crop.shape[2]
    color_ch = 1 if channels in (1, 2) else 3
    size = (crop.shape[1] * scale, crop.shape[0] * scale)
    lr16 = cv2.multiply(crop[..., :color_ch], SUBLEVELS, dtype=cv2.CV_16S)
    base = scratch.get("base", (size[1], size[0], color_ch))
    cv2.resize(lr16, size, dst=base if color_ch > 1 else base[..., 0], interpolation=cv2.INTER_CUBIC)
    centre = base[oy:oy + height, ox:ox + width]
    r3 = scratch.get("r3", (height, width, 3)) if color_ch == 3 else None
    color = dst.reshape(centre.shape) if channels == color_ch else np.empty(centre.shape, np.uint8)

    def add_band(part: int) -> None:
        rows = slice(height * part // on.count, height * (part + 1) // on.count)
        band, r = centre[rows], r16[rows]
        if r3 is not None:
            r = cv2.merge([r, r, r], dst=r3[rows])
        cv2.add(band, r.reshape(band.shape), dst=band)
        cv2.max(band, 0, dst=band)  # then |x| = x: convertScaleAbs rounds x/4 and saturates at 255
        cv2.convertScaleAbs(band, dst=color[rows], alpha=1.0 / SUBLEVELS)

    on.each(add_band, on.count)
    if channels == color_ch:
        return
    dst[..., :color_ch] = color.reshape(height, width, color_ch)
    alpha = cv2.resize(np.ascontiguousarray(crop[..., color_ch:]), size, interpolation=cv2.INTER_CUBIC)
    dst[..., color_ch:] = alpha.reshape(size[1], size[0], -1)[oy:oy + height, ox:ox + width]


def as_rgb8(crops: np.ndarray) -> np.ndarray:
    """(N, h, w, 1 or 3) uint8 colour crops → (N, h, w, 3): gray repeated (its Y is itself)."""
    return crops if crops.shape[3] == 3 else np.repeat(crops, 3, axis=3)
