"""The `quality` mode (the mirror-pair self-ensemble, model/ensemble.py) against the default, on val faces,
and the classic x8 ensemble (4 rotations, each mirrored) that it replaced.

    python bench/ensemble.py                 # 100 val faces, the four evaluation protocols, 2 threads
    python bench/ensemble.py --faces 300 --weights model/weights/espcn_x4.pt
    python bench/ensemble.py --float --faces 1000 --no-x8   # the float net, as `python -m model evaluate`
    python bench/ensemble.py --each          # + every orientation alone (why the quality mode is not x8)

Y-PSNR (BT.601, 4-px shave) of bicubic, of the default path and of each ensemble over the same LR inputs
(in brackets: against the default, and the gain over bicubic), and the median time of each on a 512²
photo, interleaved, in the same run. `--float` runs the float net as `python -m model evaluate` scores it
(the README's validation table) instead of the service's default path.
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
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402

X8 = [(k, flip) for flip in (False, True) for k in range(4)]  # Timofte et al.'s eight: k quarter-turns, mirrored


class FloatNet:
    """The shipped net in fp32 torch as `python -m model evaluate` runs it (model.evaluate.net_upscale)."""

    def __init__(self, weights: Path):
        self.net, card = E.load_model(weights.with_suffix(".json"))
        self.name, self.version, self.color = card["name"], card["version"], card.get("color", "rgb")
        self.backend, self.precision = "torch (model.evaluate)", "fp32"

    def upscale(self, img: np.ndarray) -> np.ndarray:
        return E.net_upscale(self.net, [img], self.color)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--faces", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--float", action="store_true", help="the float net as model.evaluate scores it")
    p.add_argument("--no-x8", action="store_true", help="skip the x8 ensemble (8x the time)")
    p.add_argument("--each", action="store_true",
                   help="also each orientation alone (quarter-turns, mirrored): why x8 is not the quality mode")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    up = FloatNet(args.weights) if args.float else Upscaler.from_weights(args.weights, device="cpu")
    print(f"{cpu_header()}\nnet: {up.name} {up.version}, {up.backend} {up.precision}, "
          f"{args.threads} threads\n")
    hrs = E.val_hrs(args.faces)
    sets = {p: [E.to_uint8(lr) for lr in lrs] for p, lrs in E.make_eval_set(hrs).items()}

    def mean_psnr(fn) -> dict:
        return {p: float(np.mean([M.y_psnr(fn(lr), h) for lr, h in zip(lrs, hrs)])) for p, lrs in sets.items()}

    bicubic, single = mean_psnr(E.bicubic_up), mean_psnr(up.upscale)
    ensembles = {"quality (mirror pair, shipped)": ORIENTATIONS} | ({} if args.no_x8 else {"x8 (rotations too)": X8})
    alone = {f"alone: {90 * k}°{', mirrored' if flip else ''}": [(k, flip)] for k, flip in X8[1:]} if args.each else {}
    lines = [f"| {len(hrs)} val faces: dB (vs default; gain over bicubic) | " + " | ".join(sets) + " |",
             "|---|" + "---:|" * len(sets),
             "| bicubic | " + " | ".join(f"{v:.3f}" for v in bicubic.values()) + " |",
             "| default | " + " | ".join(f"{single[p]:.3f} (–; {single[p] - bicubic[p]:+.3f})" for p in sets) + " |"]
    for name, orientations in (ensembles | alone).items():
        scores = mean_psnr(lambda lr, o=orientations: upscale_ensemble(up, lr, orientations=o))
        lines.append(f"| {name} | " + " | ".join(
            f"{scores[p]:.3f} ({scores[p] - single[p]:+.3f}; {scores[p] - bicubic[p]:+.3f})" for p in sets) + " |")
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
