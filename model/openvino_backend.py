"""The ESPCN's convolutions and pixel shuffle as one OpenVINO CPU model, built and compiled once.

OpenVINO is a public inference runtime on oneDNN: it fuses each conv+ReLU and prepacks the weights
itself, which torch does only through private `torch.ops.mkldnn` calls. The graph is built straight
from the module's weights with OpenVINO's opset API (~3 ms; `openvino.convert_model` traces the
module instead and takes ~1 s): NHWC float32 LR in, NHWC float32 (N, s·h, s·w, C) out, with
`PixelShuffle` folded in as reshape-transpose-reshape. N, h and w are dynamic, so one compiled
model serves every crop size a photo's tiling gives (static per-shape models measured within 2 %).

What is *not* folded in, measured on the shipped net (bench/README.md): the bicubic residual, chroma,
colour conversion and quantization. In the graph they made a 278² tile ~2x slower than OpenCV does
them per tile, and in bf16 they ran in bf16 too (38 % of pixels off by up to 4 levels). Tried again
for the 8-bit path as 16 fixed sub-pixel bicubic kernels in LR space (exact in bf16 as two halves):
59 ms for a 512² crop against 27 + 14 in OpenCV, the HR-sized rounding, conversion and transpose
being OpenVINO's slowest ops. What is folded in is BT.601 luma into the first conv (model/rgb8.py).
"""
from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache

import numpy as np
from torch import nn

from model.espcn import ResidualBlock

# Upscaler precision → OpenVINO INFERENCE_PRECISION_HINT, and the CPU capability each one needs.
# int8 needs a quantized model (model/quantize.py); its float remainder runs in the float hint.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
NEEDS = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}


def available() -> bool:
    """Whether the `openvino` package is installed (it is a dependency; absent means torch runs)."""
    return importlib.util.find_spec("openvino") is not None


@lru_cache(maxsize=1)
def core():
    """One `openvino.Core` per process."""
    import openvino as ov

    return ov.Core()


def supports(precision: str) -> bool:
    """Whether this CPU runs `precision` natively in OpenVINO (bf16: AVX512-BF16 or AMX)."""
    return precision in NEEDS and NEEDS[precision] in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def build_model(body: nn.Sequential, channels: int, scale: int, rgb8: bool = False):
    """`body` (Conv2d/ReLU/ResidualBlock layers, as in `ESPCN.body`) + pixel shuffle → an `openvino.Model`.

    Float input (N, h, w, C) in [0, 1] → (N, s·h, s·w, C) float, or with `rgb8` (a luma net only):
    8-bit RGB (N, h, w, 3) → (N, s², h, w) luma residual in 8-bit levels: the last conv's planes as
    they are (model/rgb8.py shuffles them while rounding). Any shuffle or layout change in the graph
    costs more than it saves: its 6-D transpose 4 ms of a 512² crop's 28; NHWC asked for as a layout
    became a reference-kernel Transpose in the saved int8 IR (4.1–4.6 ms of a 512² crop, bench/layers.py).
    """
    import openvino as ov
    import openvino.opset13 as ops

    def const(*values):
        return ops.constant(np.array(values, np.int64))

    if rgb8:
        from model.rgb8 import fold_rgb8

        body, channels = fold_rgb8(body), 1
        x = ops.parameter([-1, -1, -1, 3], ov.Type.u8, name="lr_rgb8")
        nchw = ops.transpose(ops.convert(x, ov.Type.f32), const(0, 3, 1, 2))
    else:
        x = ops.parameter([-1, -1, -1, channels], ov.Type.f32, name="lr")  # (N, h, w, C) in [0, 1]
        nchw = ops.transpose(x, const(0, 3, 1, 2))
    h = _layers(nchw, body)
    if rgb8:
        return ov.Model([h], [x], "espcn_rgb8")
    # PixelShuffle to NHWC: (N, C·s·s, h, w) → (N, C, s, s, h, w) → (N, h, s, w, s, C) → (N, s·h, s·w, C).
    shape = ops.shape_of(x)
    n, lr_h, lr_w = (ops.gather(shape, const(i), const(0)) for i in range(3))
    h = ops.reshape(h, ops.concat([n, const(channels, scale, scale), lr_h, lr_w], 0), False)
    h = ops.transpose(h, const(0, 4, 2, 5, 3, 1))
    hr_h, hr_w = ops.multiply(lr_h, const(scale)), ops.multiply(lr_w, const(scale))
    h = ops.reshape(h, ops.concat([n, hr_h, hr_w, const(channels)], 0), False)
    return ov.Model([h], [x], "espcn_body")


def _conv(h, layer: nn.Conv2d):
    import openvino.opset13 as ops

    if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise ValueError(f"unsupported conv for the OpenVINO graph: {layer}")
    weight = layer.weight.detach().float().cpu().numpy()
    pad_y, pad_x = layer.padding
    h = ops.convolution(h, ops.constant(weight), list(layer.stride), [pad_y, pad_x], [pad_y, pad_x],
                        list(layer.dilation))
    if layer.bias is not None:
        h = ops.add(h, ops.constant(layer.bias.detach().float().cpu().numpy().reshape(1, -1, 1, 1)))
    return h


def _layers(h, layers):
    """The ops of `layers` (Conv2d, ReLU, ResidualBlock) applied to the NCHW node `h`."""
    import openvino.opset13 as ops

    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            h = _conv(h, layer)
        elif isinstance(layer, nn.ReLU):
            h = ops.relu(h)
        elif isinstance(layer, ResidualBlock):
            h = ops.relu(ops.add(h, _conv(ops.relu(_conv(h, layer.conv1)), layer.conv2)))
        else:
            raise TypeError(f"unsupported layer for the OpenVINO graph: {layer}")
    return h


def cpu_properties(precision: str, threads: int) -> dict:
    """How every network here is compiled for the CPU (also by bench/layers.py)."""
    return {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "LATENCY",  # one stream: a request uses all `threads` on one batch
        # Pinning binds every worker process's threads to the same first cores; leave it to the OS.
        "ENABLE_CPU_PINNING": False,
    }


class OpenVINOBody:
    """A compiled `build_model` graph (or its int8 twin): (N, h, w, C) float32 → (N, s·h, s·w, C) float32,
    or the 8-bit RGB graph: (N, h, w, 3) uint8 → (N, s², h, w) float32 residual planes.

    `precision` is the INFERENCE_PRECISION_HINT (fp32/bf16/fp16): what every float op runs in. The
    returned array is only valid until this thread's next call (it is the request's own output
    buffer, which saves a copy of the HR batch); each thread gets its own infer request.
    """

    def __init__(self, model, precision: str, threads: int):
        self.compiled = core().compile_model(model, "CPU", cpu_properties(precision, threads))
        # What the graph takes (uint8 for the 8-bit graph): anything else would be converted twice.
        self.input_dtype = self.compiled.inputs[0].get_element_type().to_dtype()
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        x = np.ascontiguousarray(x, self.input_dtype)
        return request.infer({0: x}, share_inputs=True, share_outputs=True)[0]
