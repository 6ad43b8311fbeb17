"""A tiny training run on generated images: run-folder files, card contract, resume, export, CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import train as T  # noqa: E402
from model.espcn import ESPCN, ESPCNConfig  # noqa: E402


@pytest.fixture()
def fake_data(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        d = tmp_path / "data" / "faces" / split
        d.mkdir(parents=True)
        for i in range(n):
            h, w = 40 + int(rng.integers(0, 8)), 36
            y, x = np.mgrid[0:h, 0:w]
            img = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 3.0 + i)], -1) * 255
            img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:04d}.jpg", quality=95)
    monkeypatch.setenv("PORTRAIT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def tiny_cfg(**over) -> dict:
    raw = {
        "name": "tiny_x4", "version": "0.0.1", "seed": 3, "threads": 1,
        "model": {"channels": 3, "widths": [8], "first_kernel": 3, "residual": False},
        "data": {"hr_size": 32, "val_limit": 3},
        "train": {"epochs": 1, "batch_size": 4},
        "eval": {"final_limit": 2, "final_ssim": False},
    }
    raw.update(over)
    return T.load_config(raw)


RUN_FILES = ("checkpoint.pt", "model.pt", "config.yaml", "loss.png", "card.json", "history.json")


def test_tiny_run_writes_run_folder(fake_data):
    out = fake_data / "run"
    card = T.train(tiny_cfg(), out, progress=False, command="pytest")
    for f in RUN_FILES:
        assert (out / f).is_file(), f
    # state_dict loads into the architecture of the card (the inference contract)
    sd = torch.load(out / "model.pt", weights_only=True)
    net = ESPCN(ESPCNConfig.from_dict(card["architecture"]))
    net.load_state_dict(sd)
    on_disk = json.loads((out / "card.json").read_text())
    assert {"name", "version", "architecture", "parameters", "color", "training", "validation",
            "degradations", "data"} <= set(on_disk)
    assert on_disk["parameters"] == sum(p.numel() for p in net.parameters())
    assert on_disk["color"] == "rgb" and on_disk["training"]["time_s"] >= 0
    assert on_disk["training"]["epochs"] == 1 and on_disk["training"]["command"] == "pytest"
    assert "pyramid" in on_disk["validation"]
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["widths"] == [8]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and {"model", "optimizer", "torch_rng", "history"} <= set(ck)


def test_resume_continues_exactly(fake_data):
    straight = fake_data / "straight"
    T.train(tiny_cfg(train={"epochs": 2, "batch_size": 4}), straight, progress=False, final_eval=False)
    split = fake_data / "split"
    card = T.train(tiny_cfg(train={"epochs": 2, "batch_size": 4}), split, stop_after=1, progress=False)
    assert torch.load(split / "checkpoint.pt", weights_only=True)["epoch"] == 1 and card["complete"] is False
    T.train(tiny_cfg(train={"epochs": 2, "batch_size": 4}), split, resume=True, progress=False, final_eval=False)
    ck = torch.load(split / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2 and len(ck["history"]) == 2
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(split / "model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_luma_residual_mix_run_and_export(fake_data):
    cfg = tiny_cfg(color="y_bt601", model={"channels": 1, "widths": [8], "first_kernel": 3, "residual": True},
                   data={"hr_size": 32, "val_limit": 3, "crop": "random", "flip": True},
                   degrade={"mode": "mix"}, train={"epochs": 1, "batch_size": 4, "loss": "charbonnier"})
    out = fake_data / "luma"
    card = T.train(cfg, out, progress=False)
    assert card["color"] == "y_bt601" and card["architecture"]["channels"] == 1
    assert card["degradations"]["mode"] == "mix" and "jpeg" in card["degradations"]
    pt, js = T.export_weights(out, "tiny_x4", weights_dir=fake_data / "weights")
    assert pt.name == "tiny_x4.pt" and json.loads(js.read_text())["name"] == "tiny_x4"
    from model import evaluate as E

    net, _ = E.load_model(js)
    sr = E.net_upscale(net, [np.zeros((8, 8, 3), np.float32)], "y_bt601")
    assert sr[0].shape == (32, 32, 3) and sr[0].dtype == np.uint8


def test_cli_main(fake_data):
    cfg_path = fake_data / "c.yaml"
    raw = {"name": "cli_x4", "threads": 1, "model": {"widths": [4], "first_kernel": 3},
           "data": {"hr_size": 32, "val_limit": 2}, "train": {"epochs": 1, "batch_size": 8}}
    cfg_path.write_text(yaml.safe_dump(raw))
    out = fake_data / "cli"
    assert T.main(["--config", str(cfg_path), "--out", str(out), "--no-final-eval"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["name"] == "cli_x4" and card["training"]["command"].startswith("python -m model train --config")
    assert T.main(["--config", str(cfg_path), "--out", str(out), "--resume", "--epochs", "2",
                   "--no-final-eval"]) == 0
    assert json.loads((out / "card.json").read_text())["training"]["epochs"] == 2
    assert T.main(["--config", "no-such-config"]) == 2


def test_shipped_configs_load():
    for name in ("seed", "espcn_x4", "espcn_rb_x4"):
        cfg = T.load_config(name)
        assert cfg["model"]["channels"] == (1 if cfg["color"] == "y_bt601" else 3)
    assert T.load_config("seed")["model"] == ESPCNConfig().to_dict()


def test_bf16_training_learns_and_saves_fp32_contiguous_weights(fake_data):
    cfg = tiny_cfg(train={"epochs": 2, "batch_size": 4, "precision": "bf16", "lr": 1e-2})
    card = T.train(cfg, fake_data / "bf16", progress=False, final_eval=False)
    history = json.loads((fake_data / "bf16" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # it trains, not only runs
    assert card["training"]["config"]["train"]["precision"] == "bf16"
    sd = torch.load(fake_data / "bf16" / "model.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in sd.values())  # master weights stay fp32
    ESPCN(ESPCNConfig.from_dict(card["architecture"])).load_state_dict(sd)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        tiny_cfg(train={"precision": "fp8"})
