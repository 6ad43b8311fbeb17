"""The ways bench/speed.py runs the shipped net: each an `Upscaler` with only the net's executor swapped.

The service paths (`*_torch`, `*_ov`) are plain `Upscaler(backend=..., precision=...)`. The others
exist only here, for comparison: eager NCHW, torch.compile, onnxruntime, and the private-oneDNN
prepacked path that was the CPU default before OpenVINO (kept here so a quiet rerun can check the
decision to drop it; bench/README.md).
"""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import torch
from torch import nn

from model.espcn import ESPCN
from model.upscaler import Upscaler, shuffle_nhwc

KINDS = {  # row label → kind "<precision>_<how>"
    "torch fp32 eager (NCHW)": "fp32_eager",
    "torch fp32 channels_last": "fp32_torch",
    "torch bf16 channels_last": "bf16_torch",
    "torch fp32 fused+prepacked (private oneDNN)": "fp32_prepacked",
    "torch bf16 fused+prepacked (private oneDNN; default before OpenVINO)": "bf16_prepacked",
    "torch fp32 torch.compile (inductor, frozen)": "fp32_compile",
    "torch bf16 torch.compile (inductor, frozen)": "bf16_compile",
    "fp32 onnxruntime": "fp32_ort",
    "OpenVINO bf16, float path": "bf16_ovfloat",
    "OpenVINO int8, float path (default before the 8-bit path)": "int8_ovfloat",
    "OpenVINO fp32": "fp32_ov",
    "OpenVINO bf16": "bf16_ov",
    "OpenVINO int8 (NNCF PTQ, first and last conv in float)": "int8_ov",
}


def torch_default() -> str:
    """The row of what runs on this CPU when openvino is absent: the ratio column's denominator."""
    from model.devices import default_precision

    return f"torch {default_precision(torch.device('cpu'))} channels_last"


def service_kind(up: Upscaler) -> str:
    """The kind that is what `up` (built with the default precision and backend) runs."""
    return f"{up.precision}_{'ov' if up.backend == 'openvino' else 'torch'}"


def variant(base: Upscaler, kind: str) -> Upscaler:
    """A fresh Upscaler on `base`'s net (and int8 model) that runs the net the `kind` way.

    The service's own kinds (`*_torch`, `*_ov`) take the 8-bit path for 8-bit photos as the service
    does; `*_ovfloat` is OpenVINO on the float path (the CPU default before the 8-bit path, with the
    float graph's int8 made here by NNCF when it is installed); the other executors replace only the
    float path's net, so they run on the float path."""
    precision, how = kind.split("_", 1)
    backend = "openvino" if how in ("ov", "ovfloat") else "torch"  # "float": torch on the float path
    int8 = _float_int8(base) if kind == "int8_ovfloat" else base._int8_model
    up = Upscaler(_net_of(base), name=base.name, version=base.version, color=base.color, device="cpu",
                  tile=base.tile, precision=precision if kind != "int8_ovfloat" else "bf16", backend=backend,
                  int8_model=base._int8_model, fast_8bit=how in ("torch", "ov"))
    if kind == "int8_ovfloat":  # the float graph in int8, as shipped before the 8-bit path
        from model import openvino_backend as ov_backend

        up._fast = ov_backend.OpenVINOBody(int8, up.float_precision, up.threads)
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    layers = base._layers
    if how == "eager":
        up._fast = _Plain(copy.deepcopy(layers), dtype, base.scale, channels_last=False)
    elif how == "prepacked":
        up._fast = Prepacked(layers, dtype, base.scale)
    elif how == "compile":
        import torch._inductor.config as inductor

        inductor.freezing = True  # constant-folds weights and lets oneDNN prepack them
        module = copy.deepcopy(layers).to(dtype, memory_format=torch.channels_last)
        # dynamic=False: inductor's dynamic-shape build of this graph failed a stride assert on new
        # sizes (torch 2.13); static shapes recompile per crop size instead.
        up._fast = _Plain(module, dtype, base.scale, channels_last=True, run=torch.compile(module, dynamic=False))
    elif how == "ort":
        up._fast = _Plain(layers, torch.float32, base.scale, channels_last=False, run=_ort_runner(layers))
    elif how not in ("torch", "ov", "ovfloat", "float"):
        raise ValueError(kind)
    return up


_FLOAT_INT8: dict[int, object] = {}


def _float_int8(base: Upscaler):
    """NNCF int8 of the float luma graph (every conv but the first), calibrated as model/quantize.py
    once did: what the service ran on CPU before the 8-bit path. Needs `nncf` (else ImportError)."""
    if id(base) not in _FLOAT_INT8:
        import nncf

        from model import openvino_backend as ov_backend
        from model.images import RGB_TO_YCC, color_transform
        from model.quantize import calibration_inputs

        inputs = [color_transform(x.astype(np.float32) / 255, RGB_TO_YCC)[..., :1] for x in calibration_inputs()]
        model = ov_backend.build_model(base._layers, base.config.channels, base.scale)
        convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        _FLOAT_INT8[id(base)] = nncf.quantize(model, nncf.Dataset([np.ascontiguousarray(x) for x in inputs]),
                                              subset_size=len(inputs), fast_bias_correction=True,
                                              preset=nncf.QuantizationPreset.MIXED,
                                              ignored_scope=nncf.IgnoredScope(names=convs[:1]))
    return _FLOAT_INT8[id(base)]


def _net_of(up: Upscaler) -> ESPCN:
    net = ESPCN(up.config)
    net.body.load_state_dict(up._layers.state_dict())
    return net.eval()


class _Plain:
    """Same contract as the Upscaler's bodies ((N, h, w, C) float32 → shuffled NHWC float32)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, scale: int, channels_last: bool, run=None):
        self.module, self.dtype, self.scale, self.run = module.to(dtype), dtype, scale, run or module
        self.format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.dtype).contiguous(memory_format=self.format)
        with torch.inference_mode():
            return shuffle_nhwc(self.run(t), self.scale).numpy()


class Prepacked:
    """The CPU default before OpenVINO: each conv+ReLU one private oneDNN call on weights reordered
    once into oneDNN's blocked layout (what inductor's freezing does). Raises where the ops are absent."""

    def __init__(self, layers: nn.Sequential, dtype: torch.dtype, scale: int, crop_hint: int = 278):
        self.dtype, self.scale, self.plan = dtype, scale, []
        module = copy.deepcopy(layers).eval().to(dtype=dtype, memory_format=torch.channels_last)
        items = list(module)
        with torch.inference_mode():
            for i, layer in enumerate(items):
                if isinstance(layer, nn.Conv2d):
                    relu = i + 1 < len(items) and isinstance(items[i + 1], nn.ReLU)
                    packed = torch.ops.mkldnn._reorder_convolution_weight(
                        layer.weight, layer.padding, layer.stride, layer.dilation, layer.groups,
                        [1, layer.in_channels, crop_hint, crop_hint])
                    self.plan.append((layer, packed, "relu" if relu else "none"))
                elif not (isinstance(layer, nn.ReLU) and self.plan and self.plan[-1][2] == "relu"):
                    raise ValueError(f"unexpected layer {layer}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            for layer, weight, post_op in self.plan:
                t = torch.ops.mkldnn._convolution_pointwise(
                    t, weight, layer.bias, layer.padding, layer.stride, layer.dilation, layer.groups,
                    post_op, [], "")
            return shuffle_nhwc(t, self.scale).numpy()


def _onnx_bytes(module: nn.Module) -> bytes:
    buf = io.BytesIO()
    x = torch.rand(1, module[0].in_channels, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it is fine for convs
        torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}})
    return buf.getvalue()


def _ort_runner(module: nn.Module):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    sess = ort.InferenceSession(_onnx_bytes(module), opts, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"x": x.float().numpy()})[0])
