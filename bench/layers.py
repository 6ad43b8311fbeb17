"""Where the shipped int8 network's time goes on this CPU: OpenVINO's own per-layer counters.

    python bench/layers.py                 # one 512² photo's whole-image crop, 2 threads, 7 runs
    python bench/layers.py --size 128 --threads 1

The int8 model beside the default weights (`<name>.int8.xml`), compiled as the worker compiles it
(`model/openvino_backend.cpu_properties`, this CPU's default float precision for the float layers)
plus `PERF_COUNT`, fed an 8-bit RGB crop the size of a whole --size photo. Prints the median wall
time per inference and, per layer, its median real time and kernel (e.g. `jit_avx2_I8`,
`brgconv_avx2_f32`, `unknown_f32` for a reference kernel).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import face_images  # noqa: E402
from bench.speed import cpu_header, versions  # noqa: E402
from model import openvino_backend as ov_backend  # noqa: E402
from model.devices import default_precision  # noqa: E402
from model.images import decode_image  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="photo edge in pixels (default 512)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=12, help="layers shown (default 12)")
    args = parser.parse_args(argv)
    path = DEFAULT_WEIGHTS.with_suffix(".int8.xml")
    if not path.is_file():
        sys.exit(f"no int8 model at {path} (python -m model.quantize makes it)")
    hint = default_precision(torch.device("cpu"))  # the int8 model's float layers, as in model/upscaler.py
    properties = {**ov_backend.cpu_properties(hint, args.threads), "PERF_COUNT": True}
    compiled = ov_backend.core().compile_model(ov_backend.core().read_model(path), "CPU", properties)
    request = compiled.create_infer_request()
    crop = decode_image(face_images(1, args.size)[0])[None]  # (1, h, w, 3) uint8, as the 8-bit path feeds it
    for _ in range(2):
        request.infer({0: crop})
    walls, layers, kinds = [], defaultdict(list), {}
    for _ in range(args.runs):
        start = time.perf_counter()
        request.infer({0: crop})
        walls.append((time.perf_counter() - start) * 1000)
        for layer in request.profiling_info:
            layers[layer.node_name].append(layer.real_time.total_seconds() * 1000)
            kinds[layer.node_name] = (layer.node_type, layer.exec_type)
    medians = {name: statistics.median(times) for name, times in layers.items()}
    total = sum(medians.values())
    print(f"{cpu_header()}\n{versions()}; {path.name} (float layers in {hint}), {args.size}² 8-bit RGB, "
          f"{args.threads} thread(s), {args.runs} runs\n"
          f"wall per inference: {statistics.median(walls):.1f} ms (median); layers' sum {total:.1f} ms\n")
    print("| layer | type | kernel | ms (median) | share |\n|---|---|---|---:|---:|")
    for name, ms in sorted(medians.items(), key=lambda item: -item[1])[:args.top]:
        print(f"| {name} | {kinds[name][0]} | {kinds[name][1]} | {ms:.2f} | {ms / total:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
