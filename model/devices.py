"""Where and how the net runs: the device, the CPU's bf16 support, the default precision, the backend."""
from __future__ import annotations

import torch

from model import openvino_backend as ov_backend

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}
BACKENDS = ("auto", "openvino", "torch")
# bf16 is the CPU default where the CPU has native bf16 (AVX512-BF16/AMX): ~2x the fp32 speed for
# -0.003 dB val Y-PSNR on 100 faces (bench/README.md). Elsewhere bf16 is emulated, slower than fp32.
CPU_BF16 = True


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" → cuda when torch sees a GPU, else cpu; an unusable explicit device is a ValueError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use auto, cpu or cuda)")
    return dev


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 dot products in hardware (elsewhere bf16 is emulated, slower than fp32)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def default_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if CPU_BF16 and cpu_has_native_bf16() else "fp32"


def resolve_backend(backend: str, device: torch.device, precision: str) -> str:
    """"auto": OpenVINO where it can run `precision` (CPU, package installed, native support), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    reason = openvino_unusable(device, precision)
    if backend == "auto":
        backend = "torch" if reason else "openvino"
    elif backend == "openvino" and reason:
        raise ValueError(f"backend 'openvino' cannot run here: {reason}")
    if backend == "torch" and precision == "int8":
        raise ValueError(f"int8 runs on the openvino backend only ({reason or 'torch was asked for'})")
    return backend


def openvino_unusable(device: torch.device, precision: str) -> str | None:
    """Why OpenVINO cannot run `precision` on `device` here, or None when it can."""
    if device.type != "cpu":
        return f"it runs on CPU only, not {device.type}"
    if not ov_backend.available():
        return "the openvino package is not installed"
    if not ov_backend.supports(precision):
        return f"OpenVINO has no native {precision} on this CPU"
    return None
