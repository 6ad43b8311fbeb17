"""The `quality` mode (x8 self-ensemble, model/ensemble.py) against the default, on val faces.

    python bench/ensemble.py                 # 100 val faces, the four evaluation protocols, 2 threads
    python bench/ensemble.py --faces 300 --weights model/weights/espcn_x4.pt

Y-PSNR (BT.601, 4-px shave) of the default path and of the ensemble over the same LR inputs, and the
median time of each on a 512² photo, interleaved, in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.speed import cpu_header  # noqa: E402
from model import evaluate as E  # noqa: E402
from model import metrics as M  # noqa: E402
from model.ensemble import upscale_ensemble  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--faces", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    up = Upscaler.from_weights(args.weights, device="cpu")
    print(f"{cpu_header()}\nnet: {up.name} {up.version}, {up.backend} {up.precision}, "
          f"{args.threads} threads\n")
    hrs = E.val_hrs(args.faces)
    sets = {p: [E.to_uint8(lr) for lr in lrs] for p, lrs in E.make_eval_set(hrs).items()}
    lines = [f"| {len(hrs)} val faces | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    single = {p: float(np.mean([M.y_psnr(up.upscale(lr), h) for lr, h in zip(lrs, hrs)]))
              for p, lrs in sets.items()}
    quality = {p: float(np.mean([M.y_psnr(upscale_ensemble(up, lr), h) for lr, h in zip(lrs, hrs)]))
               for p, lrs in sets.items()}
    lines.append("| default | " + " | ".join(f"{v:.3f}" for v in single.values()) + " |")
    lines.append("| quality (x8 ensemble) | " + " | ".join(
        f"{quality[p]:.3f} ({quality[p] - single[p]:+.3f})" for p in sets) + " |")
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    times = {"default": [], "quality": []}
    for round_ in range(args.runs + 1):
        for name, fn in (("default", up.upscale), ("quality", lambda x: upscale_ensemble(up, x))):
            start = time.perf_counter()
            fn(img)
            if round_:
                times[name].append(time.perf_counter() - start)
    d, q = (float(np.median(times[k])) for k in ("default", "quality"))
    print("\n".join(lines))
    print(f"\n512² photo: default {1e3 * d:.0f} ms, quality {1e3 * q:.0f} ms ({q / d:.1f}x), "
          f"medians of {args.runs} interleaved rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
