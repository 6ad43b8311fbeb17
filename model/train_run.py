"""What a training run leaves behind besides the weights: the loss plot, the model card, the export.

The card (``card.json``) is the shipping contract with the inference side: model/upscaler.py rebuilds the
network from ``architecture`` and picks its colour path from ``color``.
"""
from __future__ import annotations

import json
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import torch

from model import degrade as G
from model.espcn import ESPCNConfig, count_parameters
from model.train_config import WEIGHTS_DIR

def save_loss_plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "b.-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="b")
    ax.set_yscale("log")
    val = [(h["epoch"], h["val_psnr"]) for h in history if h.get("val_psnr") is not None]
    if val:
        ax2 = ax.twinx()
        ax2.plot([v[0] for v in val], [v[1] for v in val], "r.-", label="val Y-PSNR (pyramid)")
        ax2.set_ylabel("val Y-PSNR dB (pyramid)", color="r")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)



def make_card(cfg, net, ds, history, train_time, load_s, scores, command, train_cpu: float = 0.0) -> dict:
    arch = ESPCNConfig.from_dict(cfg["model"]).to_dict()
    return {
        "name": cfg["name"],
        "version": str(cfg["version"]),
        "description": cfg.get("description", ""),
        "architecture": arch,
        "parameters": count_parameters(net),
        "color": cfg["color"],
        "color_note": ("RGB in/out" if cfg["color"] == "rgb" else
                       "net maps Y of PIL convert('YCbCr') (ITU-R BT.601 full range, Y=0.299R+0.587G+0.114B); "
                       "Cb/Cr upscaled bicubically"),
        "scale": arch["scale"],
        "input": "float32 NCHW in [0, 1]; output clamp to [0, 1]",
        "data": {
            "train": " + ".join(f"faces/{split}" for split in cfg["data"]["splits"]) + " (CelebA crops)",
            "train_images": len(ds), "hr_size": cfg["data"]["hr_size"],
            "crop": cfg["data"]["crop"],
            "crop_scale": cfg["data"]["crop_scale"] if cfg["data"]["crop"] == "random" else None,
            "flip": cfg["data"]["flip"],
            "lr_size": cfg["data"]["hr_size"] // arch["scale"],
        },
        "degradations": G.describe(cfg["degrade"]),
        "loss": cfg["train"]["loss"],
        "training": {
            "command": command,
            "config": cfg,
            "epochs": len(history),
            "optimizer": "Adam",
            "batch_size": cfg["train"]["batch_size"],
            "lr": cfg["train"]["lr"],
            "schedule": cfg["train"]["schedule"],
            "seed": cfg["seed"],
            "threads": cfg["threads"],
            "time_s": round(train_time, 1),
            "time_note": "wall seconds of the training epochs incl. per-epoch val (data decoding excluded); "
                         "cpu_s = process CPU seconds (both threads), cpu_s/threads ≈ wall time on an idle machine",
            "cpu_s": round(train_cpu, 1),
            "data_load_s": round(load_s, 1),
            "device": f"cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}",
            "final_train_loss": history[-1]["train_loss"] if history else None,
        },
        "validation": scores,
        **({"notes": list(cfg["notes"])} if cfg.get("notes") else {}),  # intended use and limits, from the config
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def export_weights(run_dir: Path, name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """Copy ``run_dir/model.pt`` + ``card.json`` to ``weights_dir/<name>.pt/.json``."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    pt, js = weights_dir / f"{name}.pt", weights_dir / f"{name}.json"
    shutil.copyfile(run_dir / "model.pt", pt)
    card = json.loads((run_dir / "card.json").read_text())
    card["name"] = name
    js.write_text(json.dumps(card, indent=2) + "\n")
    print(f"exported {pt} ({pt.stat().st_size // 1024} KiB) and {js}", flush=True)
    return pt, js
