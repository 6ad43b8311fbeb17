"""Tiled 4x inference with a trained ESPCN: what the worker, the CLI and the bench run.

The image is cut into tiles; each tile is cropped from the image *with* `margin` real pixels of
context on every side (≥ the net's receptive radius, ≥ 2 for bicubic), and only the tile's valid
centre is kept, so the stitched result equals one untiled pass (zero padding happens only where the
crop touches the image edge, exactly as in the untiled convolution). All crops have one size, so
tiles stack into batches. Only a batch of small LR crops goes to the device, and only the net's
output for that batch comes back; the residual, chroma, alpha and quantization then run per tile
with OpenCV (30-50x faster than the same torch ops on CPU), written straight into the preallocated
uint8/uint16 output. Peak memory is the output plus a few tile-sized buffers. Tiles are 512 px by
default: a 256 tile's margins made the net's work 18 % larger, a 512 tile's 9 % (none at 512²).

Colour: an "rgb" net runs on RGB (gray input replicated, output folded back to gray with BT.601
weights); a "y_bt601" net runs on Y of full-range BT.601 YCbCr with chroma upscaled bicubically.
Alpha is always upscaled bicubically (clipped). Measured with the shipped luma net on synthetic
mattes (176² → 44² → 176²), bicubic wins on soft mattes (40.4 vs 39.6 dB) and loses on hard binary
edges (22.9 vs 25.2 dB); bicubic is kept because it cannot invent texture in semi-transparent hair,
and running the net on alpha would double the net's work for RGBA photos.

Backends: on CPU the net's convolutions and pixel shuffle run in OpenVINO when the `openvino` package
is installed (`model/openvino_backend.py`: one graph built and compiled per Upscaler, i.e. once per
worker process), else in torch (public API: channels_last, fp32/bf16); on CUDA always in torch.
On OpenVINO, 8-bit photos and luma residual nets (every shipped net but the seed) take the 8-bit path
of `model/rgb8.py`: 8-bit RGB into the graph, the luma residual out, and the bicubic base plus
residual in int16 quarter levels, with no colour conversion of the output (the same pixels as the
float path below to one level, 1.6x its speed at 512²). Everything else (16-bit photos, RGB nets,
torch) takes the float path: YCbCr, bicubic chroma and residual in fp32 per tile.
Precision: the net may run in bf16/fp16 (the default on CUDA, and on CPUs with native bf16, see
`default_precision`), or in int8 on OpenVINO, the CPU default for 8-bit photos when `from_weights`
finds an int8 model of the 8-bit graph made from the same weights (`model/quantize.py`). A float-path
batch whose reduced-precision output has any non-finite value is redone in fp32. The residual
(bicubic) base, colour conversion and quantization are never in reduced precision.
"""
from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model import openvino_backend as ov_backend
from model.devices import PRECISIONS, default_precision, openvino_unusable, resolve_backend, resolve_device
from model.espcn import ESPCN, ESPCNConfig, count_parameters
from model import rgb8
from model.images import RGB_TO_YCC, YCC_TO_RGB, as_hwc, bicubic_upscale, color_transform, max_value, quantize
from model.rgb8 import fold_rgb8
from model.tiling import Tile, plan_tiles

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "espcn_rb_x4.pt"
COLORS = {"rgb": 3, "y_bt601": 1}  # colour convention → channels the net takes
Progress = Callable[[int, int], None]


class _Body:
    """The network's convolutions in torch, in one dtype on one device (public API only).

    (N, h, w, C) float32 numpy → (N, s·h, s·w, C) float32 numpy: `ESPCN.forward` minus the residual
    (added by the caller in fp32, sharing the bicubic it also needs for chroma), returning NHWC, the
    layout of the output array. Weights and activations are channels_last (NHWC memory is a
    channels_last NCHW view, so the input needs no copy).
    """

    def __init__(self, body: nn.Sequential, scale: int, device: torch.device, dtype: torch.dtype,
                 rgb8: bool = False):
        self.device, self.dtype, self.scale, self.rgb8 = device, dtype, scale, rgb8
        body = fold_rgb8(body) if rgb8 else body
        self.module = copy.deepcopy(body).eval().to(device=device, dtype=dtype,
                                                    memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """rgb8: (N, h, w, 3) uint8 → (N, s², h, w) float32 residual planes in levels, as the OpenVINO graph."""
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        with torch.inference_mode():
            t = t.to(self.device).to(self.dtype, memory_format=torch.channels_last)  # uint8 goes over as is
            if self.rgb8:
                return self.module(t).float().contiguous().cpu().numpy()  # NCHW, shuffled on CPU
            return shuffle_nhwc(self.module(t), self.scale).cpu().numpy()


def shuffle_nhwc(z: torch.Tensor, s: int) -> torch.Tensor:
    """`PixelShuffle(s)`, then NHWC float32 (contiguous). torch's own shuffle kernel and transpose
    are ~3x faster than one 6-D permuting copy; for one channel the transpose is free."""
    return F.pixel_shuffle(z, s).permute(0, 2, 3, 1).contiguous().float()


# ------------------------------------------------------------------------------------------ upscaler
class Upscaler:
    """A loaded net plus how to run it. `upscale` is the whole job: uint8/uint16 HWC in, 4x out.

    `backend`: "auto" (OpenVINO on CPU where installed, else torch), "openvino" or "torch".
    `int8_model`: a quantized `openvino.Model` of this net (`from_weights` passes `<name>.int8.xml`);
    with it, int8 is the default precision on the OpenVINO backend.
    `fast_8bit=False` sends 8-bit photos through the float path too (for comparisons).
    """

    def __init__(self, net: ESPCN, *, name: str = "espcn", version: str = "0", color: str = "rgb",
                 device: str | torch.device = "auto", tile: int = 512, precision: str | None = None,
                 batch_size: int | None = None, backend: str = "auto", int8_model=None, fast_8bit: bool = True):
        if COLORS.get(color) != net.config.channels:
            raise ValueError(f"color {color!r} does not fit a net with {net.config.channels} channel(s)")
        if tile < 1:
            raise ValueError(f"tile must be a positive number of pixels, got {tile}")
        dev = resolve_device(device)
        if precision is None:  # int8 where a quantized model came with the weights, else the float default
            precision = default_precision(dev)
            if int8_model is not None and backend != "torch" and not openvino_unusable(dev, "int8"):
                precision = "int8"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if precision == "int8" and int8_model is None:
            raise ValueError("precision int8 needs a quantized model: <name>.int8.xml beside the weights "
                             "(python -m model.quantize)")
        self.name, self.version, self.color = name, str(version), color
        self.config: ESPCNConfig = net.config
        self.scale, self.tile, self.precision = net.config.scale, int(tile), precision
        self.margin = max(net.config.receptive_radius, 2)  # bicubic (residual, chroma, alpha) reads 2 px
        self.batch_size = batch_size or (16 if dev.type == "cuda" else 1)
        self.backend = resolve_backend(backend, dev, precision)
        self.threads = torch.get_num_threads()  # OpenVINO's INFERENCE_NUM_THREADS (torch's own for torch)
        self._device = dev
        self._layers = copy.deepcopy(net.body).eval().float().cpu()  # fp32 master copy (440 KB shipped)
        self._int8_model = int8_model
        # 8-bit photos through a luma residual net on OpenVINO take model/rgb8.py's path: 8-bit RGB into
        # the graph, the residual out, the bicubic base and colour straight in 8 bits (int8 needs it:
        # the quantized model is that graph). Anything else takes the float path below.
        self.rgb8 = fast_8bit and color == "y_bt601" and net.config.residual
        if precision == "int8" and not (self.rgb8 and self.backend == "openvino"):
            raise ValueError("int8 is the 8-bit graph of a luma residual net on OpenVINO (model/rgb8.py)")
        # int8 exists only as that graph: 16-bit photos then run the float path in the float default.
        self.float_precision = default_precision(dev) if precision == "int8" else precision
        self._bodies: dict[tuple[str, bool], Callable[[np.ndarray], np.ndarray]] = {}
        self._fast = None  # the float path's net, built on its first use (or by a bench variant)
        self._body(precision, rgb8=True) if self.rgb8 else self._float_body()  # compiled once, at load
        self.fallback_batches = 0  # batches redone in fp32 because the half output was not finite
        self._local = threading.local()

    def _body(self, precision: str, rgb8: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        """The net in `precision` on this backend, built on first use (fp32 only if a batch needs it).
        `rgb8`: the 8-bit RGB graph of model/rgb8.py (OpenVINO, luma residual nets)."""
        key = (precision, rgb8)
        if key not in self._bodies:
            if self.backend == "openvino" and precision == "int8":  # its float remainder in the float default
                hint = default_precision(self._device)
                self._bodies[key] = ov_backend.OpenVINOBody(self._int8_model, hint, self.threads)
            elif self.backend == "openvino":
                model = ov_backend.build_model(self._layers, self.config.channels, self.scale, rgb8=rgb8)
                self._bodies[key] = ov_backend.OpenVINOBody(model, precision, self.threads)
            else:
                self._bodies[key] = _Body(self._layers, self.scale, self._device, PRECISIONS[precision], rgb8)
        return self._bodies[key]

    @property
    def device(self) -> str:
        return str(self._device)

    @classmethod
    def from_weights(cls, path: str | Path | None = None, device: str = "auto", tile: int = 512,
                     *, precision: str | None = None, batch_size: int | None = None,
                     backend: str = "auto", fast_8bit: bool = True) -> Upscaler:
        """Load `<name>.pt` (a state_dict), its model card `<name>.json` (default: espcn_rb_x4), and the
        int8 model `<name>.int8.xml` when it exists and was made from these weights (model/quantize.py)."""
        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        card_path = path.with_suffix(".json")
        if not path.is_file():
            raise FileNotFoundError(f"no weights at {path}")
        if not card_path.is_file():
            raise FileNotFoundError(f"no model card at {card_path} (it says how to rebuild the net)")
        card = json.loads(card_path.read_text())
        missing = [key for key in ("name", "version", "architecture") if key not in card]
        if missing:
            raise ValueError(f"{card_path} lacks {', '.join(missing)}")
        net = ESPCN(ESPCNConfig.from_dict(card["architecture"]))
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if "parameters" in card and card["parameters"] != count_parameters(net):
            raise ValueError(f"{card_path} says {card['parameters']} parameters, the net has "
                             f"{count_parameters(net)}")
        int8 = None
        if backend != "torch" and precision in (None, "int8"):
            from model.quantize import load_int8

            int8 = load_int8(path)
        return cls(net, name=card["name"], version=card["version"], color=card.get("color", "rgb"),
                   device=device, tile=tile, precision=precision, batch_size=batch_size, backend=backend,
                   int8_model=int8, fast_8bit=fast_8bit)

    # ---------------------------------------------------------------------------------------- upscale
    def upscale(self, img: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """(H, W[, C]) uint8/uint16, C in 1–4 → (4H, 4W[, C]) of the same dtype and channels.

        `progress(tiles_done, tiles_total)` is called with (0, total) and after every batch; an
        exception it raises stops the work and propagates (that is how a job is cancelled).
        """
        src = as_hwc(img)
        full = max_value(src.dtype)
        height, width, channels = src.shape
        if height == 0 or width == 0:
            raise ValueError(f"cannot upscale an empty image ({width}x{height})")
        if self.rgb8 and src.dtype == np.uint8:
            out = self._upscale_rgb8(src, progress)
            return out[:, :, 0] if np.ndim(img) == 2 else out
        color_ch = 1 if channels in (1, 2) else 3
        s = self.scale
        out = np.empty((height * s, width * s, channels), src.dtype)
        tiles, (crop_h, crop_w) = plan_tiles(height, width, self.tile, self.margin)
        if progress:
            progress(0, len(tiles))
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start:start + self.batch_size]
            lr = np.stack([src[t.cy:t.cy + crop_h, t.cx:t.cx + crop_w] for t in batch]).astype(np.float32)
            lr *= np.float32(1.0 / full)  # (N, h, w, C) in [0, 1]; no 8-bit rounding of 16-bit input
            if self.color == "y_bt601" and color_ch == 3:
                lr[..., :3] = color_transform(lr[..., :3], RGB_TO_YCC)  # now Y, Cb, Cr (, alpha)
            hr = self._net(lr[..., :1] if self.color == "y_bt601" else lr[..., :color_ch])
            for i, t in enumerate(batch):
                self._finish(out, t, hr[i], lr[i], color_ch, full)
            if progress:
                progress(start + len(batch), len(tiles))
        return out[:, :, 0] if np.ndim(img) == 2 else out

    def _scratch(self) -> rgb8.Scratch:
        """This thread's reusable buffers for the 8-bit path's tiles."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = rgb8.Scratch()
        return scratch

    def _float_body(self) -> Callable[[np.ndarray], np.ndarray]:
        if self._fast is None:
            self._fast = self._body(self.float_precision)
        return self._fast

    def _upscale_rgb8(self, src: np.ndarray, progress: Progress | None) -> np.ndarray:
        """8-bit photo, model/rgb8.py: the net's residual from 8-bit RGB crops, then per tile the
        bicubic base plus that residual, straight into the 8-bit output."""
        height, width, channels = src.shape
        s, color_ch = self.scale, (1 if channels in (1, 2) else 3)
        out = np.empty((height * s, width * s, channels), np.uint8)
        tiles, (crop_h, crop_w) = plan_tiles(height, width, self.tile, self.margin)
        if progress:
            progress(0, len(tiles))
        body = self._body(self.precision, rgb8=True)
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start:start + self.batch_size]
            crops = np.stack([src[t.cy:t.cy + crop_h, t.cx:t.cx + crop_w] for t in batch])
            x = rgb8.as_rgb8(crops[..., :color_ch])
            residual = body(x)  # (N, s², h, w): sub-pixel planes in 8-bit levels
            # fp16 on a GPU can overflow; on CPU bf16 has fp32's range and int8 none to leave, so the
            # check (2 ms of a 512² image) is skipped there.
            if self._device.type == "cuda" and self.precision != "fp32" and not np.isfinite(residual.sum()):
                self.fallback_batches += 1
                log.warning("%s output not finite on a batch of %d tile(s); redoing it in fp32",
                            self.precision, len(batch))
                residual = self._body("fp32", rgb8=True)(x)
            scratch = self._scratch()
            for i, t in enumerate(batch):
                core = residual[i, :, t.y0 - t.cy:t.y1 - t.cy, t.x0 - t.cx:t.x1 - t.cx]
                on = rgb8.workers(self.threads, core[0].size * s * s)
                rgb8.finish_tile(out[t.y0 * s:t.y1 * s, t.x0 * s:t.x1 * s], crops[i],
                                 rgb8.shuffle_round(core, s, scratch, on=on),
                                 ((t.y0 - t.cy) * s, (t.x0 - t.cx) * s), s, scratch, on=on)
            if progress:
                progress(start + len(batch), len(tiles))
        return out

    def _net(self, x: np.ndarray) -> np.ndarray:
        """(N, h, w, c) float32 LR → (N, 4h, 4w, net channels) float32 net output (no residual)."""
        if x.shape[-1] != self.config.channels:
            x = np.repeat(x, self.config.channels, axis=-1)  # gray replicated into an RGB net
        y = self._float_body()(x)
        # One reduction instead of an elementwise isfinite: any NaN/inf makes the sum non-finite.
        if self.float_precision != "fp32" and not np.isfinite(y.sum()):
            self.fallback_batches += 1
            log.warning("%s output not finite on a batch of %d tile(s); redoing it in fp32",
                        self.float_precision, x.shape[0])
            y = self._body("fp32")(x)
        return y

    def _finish(self, out: np.ndarray, t: Tile, hr: np.ndarray, lr: np.ndarray, color_ch: int,
                full: int) -> None:
        """Residual, chroma, alpha and quantization of one tile; its valid centre is written to `out`.

        `hr` is the net's output for the whole crop, `lr` the crop. Everything runs on whole,
        contiguous crops, which OpenCV takes without a copy; the border this wastes is ~12 % of a
        256 tile's pixels, and only the valid centre is written.
        """
        s, residual = self.scale, self.config.residual
        luma = self.color == "y_bt601"
        # One bicubic pass gives the residual base and, for a luma net on RGB, the chroma too.
        up = bicubic_upscale(lr[..., :color_ch], s) if residual or (luma and color_ch == 3) else None
        if not luma:
            if residual:
                hr += up  # a gray base broadcasts over the replicated RGB
            color = hr if color_ch == 3 else color_transform(hr, RGB_TO_YCC[:1])  # fold back to gray
        elif color_ch == 1:
            color = hr + up if residual else hr
        else:
            if residual:
                up[..., :1] += hr
            else:
                up[..., :1] = hr
            color = color_transform(up, YCC_TO_RGB)
        oy, ox, h, w = (t.y0 - t.cy) * s, (t.x0 - t.cx) * s, (t.y1 - t.y0) * s, (t.x1 - t.x0) * s
        dst = out[t.y0 * s:t.y1 * s, t.x0 * s:t.x1 * s]
        dst[..., :color_ch] = quantize(color, full)[oy:oy + h, ox:ox + w]
        if lr.shape[2] > color_ch:
            alpha = bicubic_upscale(lr[..., color_ch:], s)
            dst[..., color_ch:] = quantize(alpha, full)[oy:oy + h, ox:ox + w]
