"""The 8-bit graph's residual as NCHW planes (the service's) against NHWC (before), in one process.

    python bench/residual_layout.py                   # 128², 512², 1024² RGB, 2 threads, 9 rounds
    python bench/residual_layout.py --sizes 512 --runs 15 --weights model/weights/espcn_x4.pt

Until 2026-12-06 the 8-bit graph returned the residual NHWC, (N, h, w, s²): saved as int8 IR, that
layout became a Transpose run by a reference kernel (`unknown_f32`), and `rgb8.shuffle_round` then
copied s-int16 blocks out of it. Now the graph ends at its last conv, (N, s², h, w), and the shuffle
merges planes (model/rgb8.py). "before" rebuilds the old path on the same weights: the shipped int8
model plus a Transpose to NHWC on its output (what the old IR held), and the old shuffle, kept below.
Both rows are `Upscaler.upscale` on the same photos, interleaved round by round; wall ms and process
CPU ms per photo are medians, so a busy neighbour slows both rows alike. Outputs must be equal.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import face_images  # noqa: E402
from bench.speed import cpu_header, versions  # noqa: E402
from model import openvino_backend as ov_backend  # noqa: E402
from model import rgb8  # noqa: E402
from model.devices import default_precision  # noqa: E402
from model.images import decode_image  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402


def nhwc_shuffle_round(residual: np.ndarray, scale: int, gain: float = rgb8.SUBLEVELS) -> np.ndarray:
    """The shuffle before planes (model/rgb8.py at 2670655): (h, w, s²) float → (s·h, s·w) int16."""
    h, w, _ = residual.shape
    flat = np.ascontiguousarray(residual).reshape(h, w * scale * scale)
    r16 = cv2.addWeighted(flat, gain, flat, 0.0, 0.0, dtype=cv2.CV_16S)
    blocks = r16.view(np.dtype((np.void, 2 * scale))).reshape(h, w, scale)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1)).view(np.int16).reshape(h * scale, w * scale)


class NHWCBody(ov_backend.OpenVINOBody):
    """The int8 graph with the old NHWC output; returns the planes as a view of it, so the
    upscaler's window slicing is unchanged (the shuffle below reads the NHWC window back)."""

    def __init__(self, up: Upscaler):
        import openvino as ov
        import openvino.opset13 as ops

        model = up._int8_model.clone()
        nchw = model.get_results()[0].input_value(0)
        nhwc = ops.transpose(nchw, ops.constant(np.array([0, 2, 3, 1], np.int64)))
        super().__init__(ov.Model([nhwc], model.get_parameters(), "espcn_rgb8_nhwc"),
                         default_precision(up._device), up.threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return super().__call__(x).transpose(0, 3, 1, 2)


def before(weights: Path) -> Upscaler:
    up = Upscaler.from_weights(weights, device="cpu")
    if up.precision != "int8":
        raise SystemExit(f"{weights}: no int8 model beside it; this bench compares the int8 path's tails")
    up._bodies[(up.precision, True)] = NHWCBody(up)
    return up


def run(args) -> dict:
    after, old = Upscaler.from_weights(args.weights, device="cpu"), before(args.weights)
    shuffle = rgb8.shuffle_round
    old_shuffle = lambda planes, s, scratch: nhwc_shuffle_round(planes.transpose(1, 2, 0), s)  # noqa: E731
    rows = {"planes (now)": (after, shuffle), "NHWC (before)": (old, old_shuffle)}
    table = {}
    for size in args.sizes:
        img = decode_image(face_images(1, size)[0])  # a val face, as the worker decodes it
        outs = {}
        times = {(label, kind): [] for label in rows for kind in ("wall", "cpu")}
        for round_ in range(args.runs + 1):
            for label, (up, fn) in rows.items():
                rgb8.shuffle_round = fn
                try:
                    wall, cpu = time.perf_counter(), time.process_time()
                    outs[label] = up.upscale(img)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                finally:
                    rgb8.shuffle_round = shuffle
                if round_:  # the first round warms both up
                    times[label, "wall"].append(wall)
                    times[label, "cpu"].append(cpu)
        if not np.array_equal(*outs.values()):
            raise SystemExit(f"{size}²: the two paths' outputs differ")
        table[size] = {key: 1e3 * statistics.median(v) for key, v in times.items()}
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[128, 512, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(cpu_header())
    print(f"{versions()}; {args.weights.name} int8, 8-bit path, tile 512, {args.threads} threads, "
          f"{args.runs} rounds\n")
    table = run(args)
    print("| photo | planes (now): wall / CPU ms | NHWC (before): wall / CPU ms | before / now (wall) |")
    print("|---|---:|---:|---:|")
    for size, t in table.items():
        now, old = ((t[label, "wall"], t[label, "cpu"]) for label in ("planes (now)", "NHWC (before)"))
        print(f"| {size}² | {now[0]:.1f} / {now[1]:.1f} | {old[0]:.1f} / {old[1]:.1f} | {old[0] / now[0]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
