"""The 8-bit path's tail (the network's residual → the finished 8-bit photo): now against before, in one process.

    python bench/rgb8_tail.py                   # 128², 512², 1024² RGB, 2 threads, 9 rounds
    python bench/rgb8_tail.py --sizes 512 --runs 15 --weights model/weights/espcn_x4.pt

Three rows, each `Upscaler.upscale` on the same photo, interleaved round by round:
- now: the graph returns the residual as its last conv's NCHW planes, (N, s², h, w), and
  `rgb8.shuffle_round` and `rgb8.finish_tile` share their OpenCV passes out among `threads` threads
  (tiles of at least `rgb8.SPLIT_MIN_PIXELS` output pixels).
- finish on one thread: the same with every pass in the calling thread (`rgb8.SERIAL`).
- before (2670655): the graph returned NHWC, (N, h, w, s²), which the saved int8 IR ran as a Transpose
  on a reference kernel (`unknown_f32`), and the shuffle copied s-int16 blocks out of it, on one
  thread. Rebuilt on the same weights: the shipped int8 model plus that Transpose on its output, and
  the old shuffle, kept below.
Wall ms and process CPU ms per photo are medians, so a busy neighbour slows every row alike. The
outputs must be equal.
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
    shuffle, pool = rgb8.shuffle_round, rgb8.workers

    def old_shuffle(planes, s, scratch, on=rgb8.SERIAL):
        return nhwc_shuffle_round(planes.transpose(1, 2, 0), s)  # the NHWC window the planes view

    rows = {"now": (after, shuffle, pool), "finish on one thread": (after, shuffle, lambda *_: rgb8.SERIAL),
            "before (2670655)": (old, old_shuffle, lambda *_: rgb8.SERIAL)}
    table = {}
    for size in args.sizes:
        img = decode_image(face_images(1, size)[0])  # a val face, as the worker decodes it
        outs = {}
        times = {(label, kind): [] for label in rows for kind in ("wall", "cpu")}
        for round_ in range(args.runs + 1):
            for label, (up, shuffle_fn, workers_fn) in rows.items():
                rgb8.shuffle_round, rgb8.workers = shuffle_fn, workers_fn
                try:
                    wall, cpu = time.perf_counter(), time.process_time()
                    outs[label] = up.upscale(img)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                finally:
                    rgb8.shuffle_round, rgb8.workers = shuffle, pool
                if round_:  # the first round warms every row up
                    times[label, "wall"].append(wall)
                    times[label, "cpu"].append(cpu)
        first = next(iter(outs.values()))
        if not all(np.array_equal(first, out) for out in outs.values()):
            raise SystemExit(f"{size}²: the rows' outputs differ")
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
    labels = ["now", "finish on one thread", "before (2670655)"]
    print("| photo | " + " | ".join(f"{label}: wall / CPU ms" for label in labels) + " | before / now (wall) |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for size, t in table.items():
        cells = [f"{t[label, 'wall']:.1f} / {t[label, 'cpu']:.1f}" for label in labels]
        print(f"| {size}² | " + " | ".join(cells) + f" | {t[labels[-1], 'wall'] / t['now', 'wall']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
