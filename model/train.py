"""Train an ESPCN-family x4 face model from a YAML config.

    python -m model train --config seed                  # model/configs/seed.yaml
    python -m model train --config espcn_x4 --out runs/espcn_x4 --export
    python -m model train --config path/to/x.yaml --resume --epochs 40

(``python -m model.train ...`` works too.) A run folder (default ``runs/<config name>``) gets:
``checkpoint.pt`` (model + optimizer + epoch + RNG + history; written every epoch, used by ``--resume``),
``model.pt`` (plain ``state_dict``), ``config.yaml`` (resolved config), ``loss.png`` (train loss and
val PSNR curves), ``history.json`` and ``card.json`` (model card: architecture, parameters, data,
degradations, validation scores, training time, command). ``--export`` also copies the weights and
card to ``model/weights/<name>.pt/.json`` (the shipping contract of the inference engineer).

Determinism: the data order/augmentation of epoch ``e`` come from ``numpy.random.default_rng([seed, e])``
and torch is seeded once, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model import data as D
from model import degrade as G
from model.espcn import ESPCN, ESPCNConfig
from model.train_config import REPO, dump_yaml, load_config, merge, override
from model.train_run import export_weights, make_card, save_loss_plot  # noqa: F401 (re-exported)
from model.trainset import TrainSet

# --------------------------------------------------------------------------------------- optimisation
def loss_fn(cfg: dict):
    kind = cfg["train"]["loss"]
    if kind == "mse":
        return F.mse_loss
    if kind == "l1":
        return F.l1_loss
    if kind == "charbonnier":
        eps2 = float(cfg["train"]["charbonnier_eps"]) ** 2
        return lambda a, b: torch.sqrt((a - b) ** 2 + eps2).mean()
    raise ValueError(f"unknown loss {kind!r}")


def lr_at(step: int, total: int, cfg: dict) -> float:
    t = cfg["train"]
    base, low = float(t["lr"]), float(t["min_lr"])
    if t["warmup_steps"] and step < t["warmup_steps"]:
        return base * (step + 1) / t["warmup_steps"]
    if t["schedule"] == "constant":
        return base
    if t["schedule"] == "cosine":
        return low + 0.5 * (base - low) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    raise ValueError(f"unknown schedule {t['schedule']!r}")


@torch.no_grad()
def quick_val(net: ESPCN, cfg: dict, val_hr: list[np.ndarray], val_lr: list[np.ndarray]) -> float:
    """Mean Y-PSNR (4-px shave, 8-bit output) on the val subset under the seed (pyramid) protocol."""
    from model import evaluate as E
    from model import metrics as M

    net.eval()
    srs = E.net_upscale(net, val_lr, cfg["color"])
    net.train()
    return float(np.mean([M.y_psnr(s, h, 4) for s, h in zip(srs, val_hr)]))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- train
def train(cfg: dict, out: Path, resume: bool = False, epochs: int | None = None, export: bool = False,
          command: str | None = None, progress: bool = True, final_eval: bool = True,
          stop_after: int | None = None) -> dict:
    """Train per ``cfg`` into run folder ``out``; returns the model card.

    ``stop_after=k`` trains at most k epochs in this call (the schedule still spans ``epochs``), leaving a
    checkpoint to ``resume`` from; an unfinished run skips the final evaluation and the export.
    """
    if epochs is not None:
        cfg = merge(cfg, {"train": {"epochs": int(epochs)}})
    torch.set_num_threads(int(cfg["threads"]))
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    seed = int(cfg["seed"])
    torch.manual_seed(seed)
    np.random.seed(seed)

    net = ESPCN(ESPCNConfig.from_dict(cfg["model"]))
    bf16 = cfg["train"]["precision"] == "bf16"
    if bf16:  # NHWC lets oneDNN run the bf16 convolutions without layout copies
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["train"]["lr"]),
                           weight_decay=float(cfg["train"]["weight_decay"]))
    start_epoch, history, train_time, train_cpu = 0, [], 0.0, 0.0
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck["config"]["model"] != cfg["model"]:
            raise ValueError(f"checkpoint architecture {ck['config']['model']} != config {cfg['model']}")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        start_epoch, history, train_time = int(ck["epoch"]), list(ck["history"]), float(ck["train_time_s"])
        train_cpu = float(ck.get("train_cpu_s", 0.0))
        print(f"resumed {ckpt_path} at epoch {start_epoch}", flush=True)
    dump_yaml(cfg, out / "config.yaml")

    t_load = time.perf_counter()
    images = [im for split in cfg["data"]["splits"]
              for im in D.load_split(split, cfg["data"]["train_limit"], progress=progress)]
    ds = TrainSet(cfg, images)
    val_hr = [D.seed_hr(im, cfg["data"]["hr_size"]) for im in D.load_split("val", cfg["data"]["val_limit"])]
    val_lr = [G.degrade_named(h, "pyramid") for h in val_hr]
    load_s = time.perf_counter() - t_load
    print(f"data: {len(ds)} train faces, {len(val_hr)} val faces, loaded in {load_s:.1f}s", flush=True)

    n_epochs = int(cfg["train"]["epochs"])
    bs = int(cfg["train"]["batch_size"])
    spe = ds.steps_per_epoch(bs)
    if spe == 0:
        raise ValueError(f"batch_size {bs} > {len(ds)} training faces")
    total = n_epochs * spe
    crit = loss_fn(cfg)
    clip = cfg["train"]["grad_clip"]
    net.train()
    from tqdm import tqdm

    end_epoch = n_epochs if stop_after is None else min(n_epochs, start_epoch + int(stop_after))
    for epoch in range(start_epoch, end_epoch):
        t0, c0 = time.perf_counter(), time.process_time()
        run_loss, n = 0.0, 0
        bar = tqdm(ds.batches(epoch, seed, bs), total=spe, desc=f"epoch {epoch + 1}/{n_epochs}",
                   unit="batch", leave=False, disable=not progress)
        for k, (x, y) in enumerate(bar):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * spe + k, total, cfg)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                sr = net(x.contiguous(memory_format=torch.channels_last) if bf16 else x)
            loss = crit(sr.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(clip))
            opt.step()
            run_loss += loss.item()
            n += 1
            if k % 20 == 0:
                bar.set_postfix(loss=f"{run_loss / n:.5f}")
        ep_time = time.perf_counter() - t0
        val_psnr = None
        every = int(cfg["eval"]["every"] or 0)
        if every and ((epoch + 1) % every == 0 or epoch + 1 == n_epochs):
            val_psnr = quick_val(net, cfg, val_hr, val_lr)
        train_time += time.perf_counter() - t0
        train_cpu += time.process_time() - c0
        history.append({"epoch": epoch + 1, "train_loss": run_loss / max(n, 1), "val_psnr": val_psnr,
                        "lr": opt.param_groups[0]["lr"], "epoch_s": round(ep_time, 2)})
        print(f"epoch {epoch + 1}/{n_epochs} loss {run_loss / max(n, 1):.6f}"
              + (f" val Y-PSNR(pyramid) {val_psnr:.3f}" if val_psnr is not None else "")
              + f" ({ep_time:.1f}s)", flush=True)
        _atomic_save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                      "torch_rng": torch.get_rng_state(), "history": history, "config": cfg,
                      "train_time_s": train_time, "train_cpu_s": train_cpu}, ckpt_path)

    net.eval()
    _atomic_save(net.state_dict(), out / "model.pt")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    if history:
        save_loss_plot(history, out / "loss.png", f"{cfg['name']}: {cfg['train']['loss']} loss")

    finished = len(history) >= n_epochs
    scores = {}
    if final_eval and finished:
        from model import evaluate as E

        t_eval = time.perf_counter()
        scores = E.evaluate_net(net, cfg["color"], limit=cfg["eval"]["final_limit"],
                                with_ssim=bool(cfg["eval"]["final_ssim"]))
        print(f"final val ({time.perf_counter() - t_eval:.0f}s): " + ", ".join(
            f"{k} {v['psnr']:.3f} ({v['delta_psnr_vs_bicubic']:+.3f})" for k, v in scores.items()
            if not k.startswith("_")), flush=True)

    card = make_card(cfg, net, ds, history, train_time, load_s, scores, command, train_cpu)
    card["complete"] = finished
    (out / "card.json").write_text(json.dumps(card, indent=2))
    if export and not finished:
        print(f"not exported: stopped at epoch {len(history)}/{n_epochs}; --resume to finish", flush=True)
    elif export:
        export_weights(out, cfg["name"])
    return card


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m model train", description="Train an ESPCN x4 face model.")
    ap.add_argument("--config", required=True, help="config name in model/configs (e.g. seed) or a YAML path")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config name>)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if present")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--export", action="store_true",
                    help="copy the result to model/weights/<name>.pt/.json (shipping)")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="train at most N epochs in this call (resume later with --resume)")
    ap.add_argument("--name", default=None, help="override the model name (card + exported file names)")
    ap.add_argument("--no-final-eval", action="store_true", help="skip the full-val scoring for the card")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                    help="override one config value, e.g. --set model.blocks=3 --set 'model.widths=[48, 32]' "
                         "(repeatable; recorded in the run's config.yaml and card)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        for assignment in args.set:
            cfg = override(cfg, assignment)
    except (FileNotFoundError, ValueError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    if args.name:
        cfg["name"] = args.name
    out = args.out or (REPO / "runs" / cfg["name"])
    command = "python -m model train " + " ".join(shlex.quote(a) for a in argv)
    try:
        train(cfg, out, resume=args.resume, epochs=args.epochs, export=args.export, command=command,
              progress=not args.no_progress and sys.stderr.isatty(), final_eval=not args.no_final_eval,
              stop_after=args.stop_after)
    except FileNotFoundError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
