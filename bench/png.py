"""PNG encoding of real results: time and size of `model.png.encode_png` against the encoder it
replaced and against Pillow and OpenCV, on what the worker encodes (the model's 4x output of val faces).

    python bench/png.py                      # 128² and 512² inputs (512² and 2048² results), 7 runs
    python bench/png.py --sizes 1024 --runs 5

Every row is lossless (checked: decoded pixels equal the result). Rows run interleaved, medians shown.
"""
from __future__ import annotations

import argparse
import io
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import face_images, header, model_alone  # noqa: E402
from model.images import PNG_SIGNATURE, decode_image  # noqa: E402
from model.png import _PNG_COLOR_TYPE, _chunk, encode_png  # noqa: E402


def zlib_sub_png(img: np.ndarray) -> bytes:
    """The encoder before: Sub filter, zlib level 1, 256-row blocks (8-bit RGB only, for this bench)."""
    height, width, channels = img.shape
    comp, parts = zlib.compressobj(1), []
    for top in range(0, height, 256):
        block = img[top:top + 256].reshape(-1, width * channels)
        filtered = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
        filtered[:, 0] = 1
        filtered[:, 1:channels + 1] = block[:, :channels]
        np.subtract(block[:, channels:], block[:, :-channels], out=filtered[:, channels + 1:])
        parts.append(comp.compress(filtered.data))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPE[channels], 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def pillow_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


ROWS = {
    "zlib 1, Sub filter (the encoder before)": zlib_sub_png,
    "**encode_png: ISA-L 1, Up filter**": lambda img: encode_png(img),
    "**encode_png, threads=2**": lambda img: encode_png(img, threads=2),
    "encode_png, ISA-L level 3": lambda img: encode_png(img, compress_level=3),
    "Pillow, compress_level=1": pillow_png,
    "OpenCV imencode, level 1": lambda img: cv2.imencode(".png", img[:, :, ::-1],
                                                         [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes(),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,512", help="input edges, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--images", type=int, default=3, help="val faces per size")
    args = parser.parse_args(argv)
    from shared.settings import Settings

    upscaler = model_alone(Settings(model_device="cpu", torch_threads=2))
    print(header(upscaler))
    for size in (int(s) for s in args.sizes.split(",")):
        results = [upscaler.upscale(decode_image(data)) for data in face_images(args.images, size)]
        times = {name: [] for name in ROWS}
        sizes = {name: [] for name in ROWS}
        for name, encode in ROWS.items():  # check lossless once, outside the timing
            assert np.array_equal(decode_image(encode(results[0])), results[0]), name
        for _ in range(args.runs):
            for name, encode in ROWS.items():
                for img in results:
                    started = time.perf_counter()
                    data = encode(img)
                    times[name].append(time.perf_counter() - started)
                    sizes[name].append(len(data))
        out = results[0].shape
        print(f"\n{size}² input → {out[1]}x{out[0]} RGB result ({results[0].nbytes / 1e6:.1f} MB raw), "
              f"{args.images} faces x {args.runs} runs\n")
        print("| encoder | ms (median) | MB (mean) | x time of the encoder before |")
        print("|---|---:|---:|---:|")
        before = statistics.median(times[next(iter(ROWS))])
        for name in ROWS:
            ms = statistics.median(times[name])
            print(f"| {name} | {ms * 1000:.1f} | {statistics.mean(sizes[name]) / 1e6:.2f} | {ms / before:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
