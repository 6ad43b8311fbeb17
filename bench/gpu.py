"""GPU speed of the shipped net: MP/s by input size, batch, precision and executor, and end to end.

    python bench/gpu.py                               # 512² and 1024², batches 1-64, fp32/fp16/bf16
    python bench/gpu.py --sizes 512 --batches 1,16 --no-compile --no-trt
    python bench/gpu.py --device cpu --sizes 32 --batches 1,2 --runs 2    # check the script without a GPU

Needs a CUDA device (the CUDA build of torch 2.13.0, see Dockerfile); without one it says so and
exits with status 2. Two tables:

- net only: a batch of B LR images of S² (Y for the shipped luma net) through conv stack + pixel
  shuffle on the GPU, inputs already there, output left there; MP/s = B·(4S)² / median time (CUDA
  synchronized). Executors: eager channels_last, `torch.compile` (static shapes), and TensorRT via
  `torch_tensorrt` when it is installed. Out-of-memory cells say OOM.
- end to end: `Upscaler.upscale(rgb uint8 S²)` on device="cuda" with tile 256 and `batch_size` B,
  which adds the host side (tiling, transfers, bicubic chroma, quantization in OpenCV).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, runs: int) -> float:
    fn()  # warm-up: cuDNN algorithm search, compile, engine build
    sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def mp_s(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def executor(kind: str, body: torch.nn.Module, x: torch.Tensor, scale: int):
    """kind → a no-argument callable running the net on `x` (or raises when unavailable)."""
    def forward(module):
        return lambda: torch.nn.functional.pixel_shuffle(module(x), scale)

    if kind == "eager":
        return forward(body)
    if kind == "torch.compile":
        torch._dynamo.reset()  # one static-shape graph per cell; the recompile limit would fall back to eager
        return forward(torch.compile(body, dynamic=False))
    if kind == "TensorRT":
        import torch_tensorrt

        trt = torch_tensorrt.compile(body, ir="dynamo", inputs=[x], enabled_precisions={x.dtype})
        return forward(trt)
    raise ValueError(kind)


def net_table(up: Upscaler, device: torch.device, args) -> str:
    heads = [f"{s}² b{b}" for s in args.sizes for b in args.batches]
    lines = ["| executor, precision | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for kind in args.executors:
        for name in args.precisions:
            dtype = DTYPES[name]
            body = copy.deepcopy(up._layers).to(device=device, dtype=dtype, memory_format=torch.channels_last)
            cells = []
            for size in args.sizes:
                for batch in args.batches:
                    cells.append(net_cell(kind, body, device, dtype, size, batch, up, args.runs))
            lines.append(f"| {kind}, {name} | " + " | ".join(cells) + " |")
            print(lines[-1], file=sys.stderr, flush=True)  # progress: compile/TRT rows take minutes
    return "\n".join(lines)


def net_cell(kind, body, device, dtype, size, batch, up, runs) -> str:
    try:
        x = torch.rand(batch, up.config.channels, size, size, device=device).to(
            dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            seconds = median_seconds(executor(kind, body, x, up.scale), device, runs)
        return mp_s(batch * (size * up.scale) ** 2 / 1e6 / seconds)
    except torch.OutOfMemoryError:
        return "OOM"
    except Exception as exc:  # an executor that cannot build this shape: say which, keep the table
        print(f"{kind} {dtype} {size}² b{batch}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return "n/a"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def end_to_end_table(device: torch.device, args) -> str:
    heads = [f"{s}² b{b}" for s in args.sizes for b in args.batches]
    lines = ["| Upscaler.upscale, precision | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in args.sizes}
    for name in args.precisions:
        cells = []
        for size in args.sizes:
            for batch in args.batches:
                up = Upscaler.from_weights(args.weights, device=str(device), tile=args.tile, precision=name,
                                           batch_size=batch, backend="torch")
                seconds = median_seconds(lambda up=up, img=imgs[size]: up.upscale(img), device, args.runs)
                cells.append(mp_s((size * up.scale) ** 2 / 1e6 / seconds))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to check the script")
    p.add_argument("--sizes", type=ints, default=[512, 1024], help="LR input edges (default 512,1024)")
    p.add_argument("--batches", type=ints, default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "fp16", "bf16"])
    p.add_argument("--tile", type=int, default=512, help="end-to-end table: Upscaler tile (default 512)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per cell after one warm-up")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    p.add_argument("--no-trt", action="store_true", help="skip TensorRT rows")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench/gpu.py needs a CUDA device, and torch {torch.__version__} sees none "
              f"(torch.cuda.is_available() is False). Run it on a GPU machine with the CUDA build of "
              f"torch; the CPU numbers are in `python bench/speed.py`.")
        return 2
    args.executors = ["eager"] + ([] if args.no_compile else ["torch.compile"])
    try:
        import torch_tensorrt  # noqa: F401

        args.executors += [] if args.no_trt or device.type != "cuda" else ["TensorRT"]
        trt = f"torch_tensorrt {torch_tensorrt.__version__}"
    except ImportError:
        trt = "no torch_tensorrt (TensorRT rows skipped)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check only)"
    cuda = f"CUDA {torch.version.cuda}" if device.type == "cuda" else "no CUDA"
    up = Upscaler.from_weights(args.weights, device="cpu", precision="fp32", backend="torch")
    print(f"{name}; torch {torch.__version__}, {cuda}, {trt}\nnet: {up.name} {up.version}, "
          f"{up.config.channels} channel(s) in; MP/s of output pixels, median of {args.runs} runs\n")
    print("Net only (conv stack + pixel shuffle, data on the device):\n")
    print(net_table(up, device, args))
    print(f"\nEnd to end (Upscaler.upscale, RGB uint8 in and out, tile {args.tile}, b = batch_size):\n")
    print(end_to_end_table(device, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
