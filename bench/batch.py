"""Would batching small jobs help on CPU? The default's network on several photos per call.

    python bench/batch.py                       # 128² and 256² photos, batches 1, 2, 4, 8, 16; 9 rounds
    python bench/batch.py --sizes 128 --batches 1,4 --runs 15

Issue 10 asked whether a worker draining many small jobs should run their tiles through the network
together. Per size, round after round, interleaved: the compiled 8-bit graph the service runs on CPU
(`Upscaler._body`, OpenVINO) on `batch` distinct random photos stacked into one call, for each batch
size, timed per photo; and, for scale, the whole `Upscaler.upscale` of one photo (what the worker runs
per job: the network plus the bicubic base and the 8-bit output). A batch only spares the network's
per-call cost; "x batch 1" above 1.00 is what batching would save on that part.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ceiling import compiled_network  # noqa: E402
from bench.speed import add_run_args, cpu_header, int_list, load_shipped, versions  # noqa: E402
from model.rgb8 import as_rgb8  # noqa: E402


def measure(up, sizes: list[int], batches: list[int], runs: int) -> list[dict]:
    """Per size: the median ms per photo of the network at each batch size, and of one whole upscale."""
    body = compiled_network(up)
    rng = np.random.default_rng(0)
    results = []
    for n in sizes:
        photos = rng.integers(0, 256, (max(batches), n, n, 3), dtype=np.uint8)
        inputs = {b: as_rgb8(photos[:b]) for b in batches}
        times: dict = {b: [] for b in batches}
        times["upscale"] = []
        for round_ in range(runs + 1):
            for b in batches:
                start = time.perf_counter()
                body(inputs[b])
                if round_:  # round 0 warms up (OpenVINO compiles each new shape on its first call)
                    times[b].append((time.perf_counter() - start) / b)
            start = time.perf_counter()
            up.upscale(photos[0])
            if round_:
                times["upscale"].append(time.perf_counter() - start)
        results.append({"size": n, **{k: 1e3 * float(np.median(t)) for k, t in times.items()}})
    return results


def table(results: list[dict], batches: list[int]) -> str:
    head = " | ".join(f"batch {b}" + ("" if b == batches[0] else f" (x batch {batches[0]})") for b in batches)
    lines = [f"| photo | network ms per photo: {head} | whole upscale of one photo, ms |",
             "|---|" + "---:|" * (len(batches) + 1)]
    for r in results:
        base = r[batches[0]]
        cells = [f"{r[batches[0]]:.2f}"] + [f"{r[b]:.2f} ({base / r[b]:.2f}x)" for b in batches[1:]]
        lines.append(f"| {r['size']}² | " + " | ".join(cells) + f" | {r['upscale']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p, runs=9, sizes=(128, 256))
    p.add_argument("--batches", type=int_list, default=[1, 2, 4, 8, 16], help="default 1,2,4,8,16")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    up, desc = load_shipped(args.weights, args.tile, precision=None)  # the service's default path
    print(f"{cpu_header()}\n{versions()}; {args.threads} thread(s), load avg {os.getloadavg()[0]:.2f}\n"
          f"net: {desc}, {up.precision} on the 8-bit path; medians of {args.runs} rounds\n")
    print(table(measure(up, args.sizes, args.batches, args.runs), args.batches))
    print(f"\nload avg at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
