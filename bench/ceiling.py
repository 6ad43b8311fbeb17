"""The most the shipped model can gain end to end on this CPU: its network alone against the peer.

    python bench/ceiling.py                  # 128², 512², 1024² RGB, 2 threads, 9 rounds
    python bench/ceiling.py --sizes 512 --runs 15 --weights model/weights/espcn_x4.pt

Per size, round after round, interleaved (as bench/speed.py does, on the same random 8-bit photos):
- the OpenCV dnn_superres ESPCN_x4 peer's whole upscale;
- the service default's whole `Upscaler.upscale` (tiling, the network, the bicubic base, the
  residual, the 8-bit output);
- the network alone on that photo's tile crops (`plan_tiles`, one call per crop, as `Upscaler`
  runs them on CPU): the compiled graph the default runs, nothing around it.

peer ms / network ms is the ratio the upscale would reach if everything around the network cost
nothing: the ceiling for this network on this CPU, which issue 10's "≥ 6x the peer" must fit under.
"rest" is upscale − network, and its share of the upscale. Two tables: the medians over the rounds,
and each row's fastest round (on a host whose speed swings from round to round, the fastest is the
least disturbed estimate of what each part costs).
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

from bench.speed import (PEER, PEER_ROW, add_run_args, cpu_header, load_shipped,  # noqa: E402
                         peer_and_bicubic, versions)
from model.tiling import plan_tiles  # noqa: E402
from model.upscaler import Upscaler  # noqa: E402


def compiled_network(up: Upscaler):
    """The compiled 8-bit graph the default runs on CPU (also bench/batch.py's); exits on any other path."""
    if not up.rgb8:
        raise SystemExit(f"the default here is not the 8-bit OpenVINO path ({up.precision}, {up.device}); "
                         "this bench measures that path's network")
    return up._body(up.precision, rgb8=True)


def network_alone(up: Upscaler, img: np.ndarray):
    """A callable running the default's compiled network on each of `img`'s tile crops, in order."""
    body = compiled_network(up)
    tiles, (crop_h, crop_w) = plan_tiles(img.shape[0], img.shape[1], up.tile, up.margin)
    crops = [np.ascontiguousarray(img[None, t.cy:t.cy + crop_h, t.cx:t.cx + crop_w]) for t in tiles]

    def run(_img: np.ndarray) -> None:
        for crop in crops:
            body(crop)

    return run, len(crops), (crop_h, crop_w)


def measure(up: Upscaler, sizes: list[int], runs: int) -> list[dict]:
    """Per size: median and fastest ms of the peer, the upscale and the network alone, rows interleaved."""
    peer = peer_and_bicubic()[PEER_ROW]
    rng = np.random.default_rng(0)
    results = []
    for n in sizes:  # one after the other: the peer re-plans its net on every change of input size
        img = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
        net, count, crop = network_alone(up, img)
        rows = {"peer": peer, "upscale": up.upscale, "network": net}
        times = {name: [] for name in rows}
        for round_ in range(runs + 1):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn(img)
                if round_:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
        results.append({"size": n, "crops": count, "crop": crop,
                        **{name: 1e3 * float(np.median(t)) for name, t in times.items()},
                        **{f"{name}_min": 1e3 * min(t) for name, t in times.items()}})
    return results


def table(results: list[dict], stat: str = "") -> str:
    """One row per size; `stat` "" for the medians, "_min" for each row's fastest round."""
    lines = ["| photo | peer ms | upscale ms (x peer) | network alone ms (x peer: the ceiling) "
             "| rest ms (share) |", "|---|---:|---:|---:|---:|"]
    for r in results:
        peer, upscale, network = (r[name + stat] for name in ("peer", "upscale", "network"))
        rest = upscale - network
        crops = f"{r['crops']} crop{'s' if r['crops'] > 1 else ''} of {r['crop'][0]}x{r['crop'][1]}"
        lines.append(
            f"| {r['size']}² ({crops}) | {peer:.1f} | {upscale:.1f} ({peer / upscale:.2f}x) "
            f"| {network:.1f} ({peer / network:.2f}x) | {rest:.1f} ({rest / upscale:.0%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p, runs=9)
    args = p.parse_args(argv)
    if not PEER.is_file():
        print(f"the peer's model is absent ({PEER}); nothing to compare against", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    up, desc = load_shipped(args.weights, args.tile, precision=None)  # the service's default path
    print(f"{cpu_header()}\n{versions()}; {args.threads} thread(s), tile {args.tile}, load avg "
          f"{os.getloadavg()[0]:.2f}\nnet: {desc}, {up.precision} on the 8-bit path\n")
    results = measure(up, args.sizes, args.runs)
    print(f"Medians of {args.runs} rounds:\n\n{table(results)}\n\nEach row's fastest round (the least "
          f"disturbed by a busy host; rows and sizes not from one round):\n\n{table(results, '_min')}")
    print(f"\nload avg at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
