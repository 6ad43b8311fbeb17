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
- end to end: `Upscaler.upscale(rgb uint8 S²)` on device="cuda" with tile 512 and `batch_size` B,
  which adds the host side (tiling, transfers, the 8-bit path's bicubic base and rounding in OpenCV).
- `--check DIR`: the CUDA path's output against the CPU's on face photos, and a 512² job's model and
  PNG time on the worker's default (`Upscaler.from_weights(device="auto")`, as worker/runtime.py).
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


def check_table(device: torch.device, args) -> str:
    """The CUDA path against the CPU's fp32 float path on real faces: what a GPU worker's job computes.

    Each face in --check (HR) is reduced 4x (area, 8-bit) and upscaled by `Upscaler.from_weights(device=
    "auto")` exactly as worker/runtime.py loads it (so also the default precision and tile), by the same
    on the float path, and on the CPU in fp32 on the float path (the reference). Reports the val Y-PSNR
    of each and the largest difference from the reference in 8-bit levels, plus the time of a job's
    model step and PNG encode at 512²."""
    import cv2

    from model import metrics as M
    from model.png import encode_png

    files = sorted(p for p in Path(args.check).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    hrs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files]
    hrs = [hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4] for hr in hrs]
    lrs = [cv2.resize(hr, (hr.shape[1] // 4, hr.shape[0] // 4), interpolation=cv2.INTER_AREA) for hr in hrs]
    worker = Upscaler.from_weights(args.weights, device="auto")  # as worker/runtime.py
    rows = {
        f"worker default: {worker.device}, {worker.backend} {worker.precision}, 8-bit path": worker,
        f"{device}, {worker.float_precision}, float path": Upscaler.from_weights(
            args.weights, device=str(device), precision=worker.float_precision, backend="torch", fast_8bit=False),
        f"{device}, fp32, 8-bit path": Upscaler.from_weights(args.weights, device=str(device), precision="fp32",
                                                             backend="torch"),
    }
    ref_up = Upscaler.from_weights(args.weights, device="cpu", precision="fp32", backend="torch", fast_8bit=False)
    ref = [ref_up.upscale(lr) for lr in lrs]
    ref_psnr = float(np.mean([M.y_psnr(o, h) for o, h in zip(ref, hrs)]))
    lines = [f"| path ({len(hrs)} faces, area 4x down) | Y-PSNR dB | Δ vs CPU fp32 | max \\|Δ\\| levels |",
             "|---|---:|---:|---:|", f"| CPU fp32, float path (reference) | {ref_psnr:.4f} | – | – |"]
    for label, up in rows.items():
        outs = [up.upscale(lr) for lr in lrs]
        psnr = float(np.mean([M.y_psnr(o, h) for o, h in zip(outs, hrs)]))
        diff = max(int(np.abs(o.astype(int) - r).max()) for o, r in zip(outs, ref))
        lines.append(f"| {label} | {psnr:.4f} | {psnr - ref_psnr:+.4f} | {diff} |")
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    model_s = median_seconds(lambda: worker.upscale(img), device, args.runs)
    out = worker.upscale(img)
    png_s = median_seconds(lambda: encode_png(out), torch.device("cpu"), args.runs)
    lines.append(f"\nA 512² job's model step on the worker default: {1e3 * model_s:.1f} ms "
                 f"({(2048 ** 2) / 1e6 / model_s:.0f} output MP/s); its PNG encode: {1e3 * png_s:.1f} ms; "
                 f"fp32 fallbacks: {worker.fallback_batches}")
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
    p.add_argument("--check", type=Path, default=None, metavar="DIR",
                   help="first compare the CUDA path with the CPU on the face photos in DIR (e.g. faces/val)")
    p.add_argument("--no-tables", action="store_true", help="only --check")
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
    if args.check:
        print("The CUDA path against the CPU (bench/gpu.py --check):\n")
        print(check_table(device, args) + "\n", flush=True)
    if args.no_tables:
        return 0
    print("Net only (conv stack + pixel shuffle, data on the device):\n")
    print(net_table(up, device, args))
    print(f"\nEnd to end (Upscaler.upscale, RGB uint8 in and out, tile {args.tile}, b = batch_size):\n")
    print(end_to_end_table(device, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
