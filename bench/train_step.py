"""Training step time in fp32 vs the bf16 forward (`train.precision: bf16`), on one CPU config.

    python bench/train_step.py                     # the shipped espcn_x4 architecture, batch 16, 2 threads
    python bench/train_step.py --config seed --runs 9

One step = what model/train.py does per batch: forward (under autocast for bf16, channels_last),
Charbonnier loss in fp32, backward, Adam. Random 44x44 LR / 176x176 HR tensors: the data pipeline
is not timed. Rows alternate step by step after a warm-up, and each reports the median of --runs
rounds of --steps steps, so a busy neighbour slows both alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.espcn import ESPCN, ESPCNConfig
from model.train_config import load_config


def make_step(cfg: dict, bf16: bool, batch: int):
    torch.manual_seed(0)
    net = ESPCN(ESPCNConfig.from_dict(cfg["model"]))
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    c, s = cfg["model"]["channels"], cfg["model"]["scale"]
    x, y = torch.rand(batch, c, 44, 44), torch.rand(batch, c, 44 * s, 44 * s)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sr = net(x)
        loss = torch.sqrt((sr.float() - y) ** 2 + 1e-6).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="espcn_x4")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    steps = {"fp32": make_step(cfg, False, args.batch), "bf16 forward, channels_last": make_step(cfg, True, args.batch)}
    for step in steps.values():  # warm-up: oneDNN picks and caches its kernels
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.runs):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps * 1000)
    base = statistics.median(times["fp32"])
    print(f"{cfg['name']} ({cfg['model']['widths']}, k{cfg['model']['first_kernel']}), batch {args.batch}, "
          f"{args.threads} threads, torch {torch.__version__}")
    print("| training step | ms (median) | x fp32 speed |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.0f} | {base / statistics.median(t):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
