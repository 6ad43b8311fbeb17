"""Training configs: the defaults every YAML in model/configs overrides, and how a name becomes a config.

A config is a plain dict (it is written into the run folder and the model card verbatim). ``degrade`` is
replaced whole, not merged, because its keys depend on its ``mode`` (see model/degrade.py).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from model.espcn import ESPCNConfig

MODEL_DIR = Path(__file__).resolve().parent
CONFIG_DIR = MODEL_DIR / "configs"
WEIGHTS_DIR = MODEL_DIR / "weights"
REPO = MODEL_DIR.parent

DEFAULTS: dict = {
    "name": None,  # defaults to the config file stem
    "version": "0.1.0",
    "description": "",
    "seed": 0,
    "threads": 2,
    "color": "rgb",  # rgb | y_bt601
    "model": ESPCNConfig().to_dict(),
    "data": {
        "splits": ["train"],  # folders under faces/ to train on (train_extra: 6,000 more, training only)
        "train_limit": None,  # first N faces of each split (sorted); None = all
        "val_limit": 200,  # faces for the per-epoch val PSNR
        "hr_size": 176,
        "crop": "center",  # center (seed) | random
        "crop_scale": [0.8, 1.0],  # random crop side as a fraction of min(H, W)
        "flip": False,
    },
    "degrade": {"mode": "pyramid"},
    "train": {
        "epochs": 30,
        "batch_size": 16,
        "lr": 1e-3,
        "min_lr": 1e-5,
        "schedule": "cosine",  # cosine | constant
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "loss": "mse",  # mse | l1 | charbonnier
        "charbonnier_eps": 1e-3,
        "grad_clip": None,
        # bf16 = forward under torch.autocast(bfloat16) with fp32 master weights, loss and optimizer
        # state: 2.4x the fp32 step rate on AVX512-BF16 CPUs (64 vs 153 ms per batch of 16, espcn_x4 net;
        # python bench/train_step.py).
        "precision": "fp32",  # fp32 | bf16
    },
    "eval": {"every": 1, "final_limit": 1000, "final_ssim": True},
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("degrade",):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / f"{name_or_path}.yaml", CONFIG_DIR / f"{name_or_path}.yml", CONFIG_DIR / str(name_or_path)):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"config {name_or_path!r} not found (a path, or one of: {known})")


def load_config(name_or_path: str | Path | dict) -> dict:
    if isinstance(name_or_path, dict):
        raw, stem = name_or_path, "custom"
    else:
        path = resolve_config_path(name_or_path)
        raw, stem = yaml.safe_load(path.read_text()) or {}, path.stem
    cfg = merge(DEFAULTS, raw)
    cfg["name"] = cfg.get("name") or stem
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    """Normalise `cfg["model"]` in place and refuse settings that cannot train."""
    cfg["model"] = ESPCNConfig.from_dict(cfg["model"]).to_dict()
    if cfg["color"] not in ("rgb", "y_bt601"):
        raise ValueError(f"color must be rgb or y_bt601, not {cfg['color']!r}")
    if cfg["train"]["precision"] not in ("fp32", "bf16"):
        raise ValueError(f"train.precision must be fp32 or bf16, not {cfg['train']['precision']!r}")
    want = 1 if cfg["color"] == "y_bt601" else 3
    if cfg["model"]["channels"] != want:
        raise ValueError(f"color {cfg['color']} needs model.channels={want}")


def dump_yaml(obj: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))


def override(cfg: dict, assignment: str) -> dict:
    """`cfg` with one dotted key set from "a.b=<YAML value>" (the train CLI's --set), validated again."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set wants KEY=VALUE, got {assignment!r}")
    path = key.strip().split(".")
    out = copy.deepcopy(cfg)
    node = out
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"--set {key}: {part!r} is not a section of the config")
        node = node[part]
    if path[-1] not in node and path[0] != "degrade":
        raise ValueError(f"--set {key}: no such setting (known here: {', '.join(sorted(node))})")
    node[path[-1]] = yaml.safe_load(raw)
    validate(out)
    return out
