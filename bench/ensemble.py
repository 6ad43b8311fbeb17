"""The `quality` mode (the mirror-pair self-ensemble, model/ensemble.py) against the default, on val faces,
and the classic x8 ensemble (4 rotations, each mirrored) that it replaced.

    python bench/ensemble.py                 # 100 val faces, the four evaluation protocols, 2 threads
    python bench/ensemble.py --faces 300 --weights model/weights/espcn_rb_x4.pt

Y-PSNR (BT.601, 4-px shave) of the default path and of each ensemble over the same LR inputs, and the
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
from model.ensemble import ORIENTATIONS, upscale_ensemble  # noqa: E402

X8 = [(k, flip) for flip in (False, True) for k in range(4)]  # Timofte et al.'s eight: k quarter-turns, mirrored
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
    ensembles = {"quality (mirror pair, shipped)": ORIENTATIONS, "x8 (rotations too)": X8}
    lines.append("| default | " + " | ".join(f"{v:.3f}" for v in single.values()) + " |")
    for name, orientations in ensembles.items():
        scores = {p: float(np.mean([M.y_psnr(upscale_ensemble(up, lr, orientations=orientations), h)
                                    for lr, h in zip(lrs, hrs)])) for p, lrs in sets.items()}
        lines.append(f"| {name} | " + " | ".join(f"{scores[p]:.3f} ({scores[p] - single[p]:+.3f})" for p in sets)
                     + " |")
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    runs = {"default": up.upscale} | {name: (lambda o: lambda x: upscale_ensemble(up, x, orientations=o))(o)
                                      for name, o in ensembles.items()}
    times: dict = {name: [] for name in runs}
    for round_ in range(args.runs + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn(img)
            if round_:
                times[name].append(time.perf_counter() - start)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print("\n".join(lines))
    print("\n512² photo, medians of " + f"{args.runs} interleaved rounds: " + ", ".join(
        f"{name} {1e3 * t:.0f} ms ({t / med['default']:.1f}x)" for name, t in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
