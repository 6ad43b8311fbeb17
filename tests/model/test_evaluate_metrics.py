"""Metrics (pure functions) and the evaluation report on generated data."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import metrics as M  # noqa: E402


def test_rgb_to_y_bt601_full_range():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    np.testing.assert_allclose(M.rgb_to_y(px)[0], [76.245, 149.685, 29.07, 255.0], atol=1e-9)
    np.testing.assert_allclose(M.rgb_to_y(px.astype(np.float32) / 255), M.rgb_to_y(px), atol=1e-4)
    # agrees with PIL's YCbCr (integer-rounded) to within 1 level
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pil_y = np.asarray(Image.fromarray(img).convert("YCbCr"))[..., 0].astype(float)
    assert np.abs(M.rgb_to_y(img) - pil_y).max() <= 1.0


def test_shave():
    a = np.zeros((20, 24, 3))
    assert M.shave(a, 4).shape == (12, 16, 3) and M.shave(a, 0).shape == a.shape


def test_psnr_identical_and_known_value():
    a = np.full((10, 10), 100.0)
    assert M.psnr(a, a) == math.inf
    assert M.psnr(a, a, cap=100.0) == 100.0
    b = a + 10.0  # MSE = 100 → 10·log10(255²/100) = 28.1308 dB
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    assert M.psnr(a, b) == pytest.approx(28.1308036, abs=1e-6)
    with pytest.raises(ValueError):
        M.psnr(a, np.zeros((3, 3)))


def test_y_psnr_shaves_border():
    hr = np.full((24, 24, 3), 128, np.uint8)
    sr = hr.copy()
    sr[:4] = 0  # damage only inside the 4-px border
    assert M.y_psnr(sr, hr) == math.inf
    sr[10, 10] = 138  # one pixel off by 10 in every channel → ΔY = 10 over 16x16
    assert M.y_psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / (100 / 256)), abs=1e-6)


def test_ssim_identical_and_ordered():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert M.y_ssim(a, a) == pytest.approx(1.0)
    noisy1 = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    noisy2 = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    assert 1.0 > M.y_ssim(noisy1, a) > M.y_ssim(noisy2, a)


def test_evaluate_main_on_generated_data(tmp_path, monkeypatch):
    from model import evaluate as E
    from model.espcn import ESPCN, ESPCNConfig

    d = tmp_path / "data" / "faces" / "val"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 256, (60, 52, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    monkeypatch.setenv("PORTRAIT_DATA_DIR", str(tmp_path / "data"))
    wd = tmp_path / "weights"
    wd.mkdir()
    torch.manual_seed(0)
    for name, cfg, color in (("rgbnet", ESPCNConfig(widths=(4,), first_kernel=3), "rgb"),
                             ("lumanet", ESPCNConfig(channels=1, widths=(4,), first_kernel=3, residual=True),
                              "y_bt601")):
        net = ESPCN(cfg)
        torch.save(net.state_dict(), wd / f"{name}.pt")
        (wd / f"{name}.json").write_text(json.dumps({"name": name, "version": "0", "color": color,
                                                     "architecture": cfg.to_dict(), "parameters": 1}))
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    out.write_text("old\n" + E.NOTES_MARKER + "\nmy notes\n")
    rc = E.main(["--limit", "3", "--no-peers", "--weights-dir", str(wd), "--out", str(out),
                 "--grid", str(tmp_path / "docs" / "grid.png"), "--grid-faces", "2"])
    assert rc == 0
    text = out.read_text()
    for label in ("bicubic", "rgbnet", "lumanet", "clean area", "area + JPEG q60"):
        assert label in text
    assert "my notes" in text and "old" not in text.split("\n")[0]
    assert (tmp_path / "docs" / "grid.png").is_file()
    # deterministic degradations: the same table twice
    rc = E.main(["--limit", "3", "--no-peers", "--no-ssim", "--weights-dir", str(wd), "--no-write"])
    assert rc == 0


def test_evaluation_set_is_deterministic():
    from model import evaluate as E

    rng = np.random.default_rng(0)
    hrs = [rng.integers(0, 256, (176, 176, 3), dtype=np.uint8) for _ in range(2)]
    a, b = E.make_eval_set(hrs, seed=0), E.make_eval_set(hrs, seed=0)
    for k in a:
        for x, y in zip(a[k], b[k]):
            np.testing.assert_array_equal(x, y)
    c = E.make_eval_set(hrs, seed=1)
    assert not np.array_equal(a["bicubic_blur_noise"][0], c["bicubic_blur_noise"][0])


@pytest.mark.data
@pytest.mark.parametrize("name,algo", [("ESPCN_x4", "espcn"), ("FSRCNN_x4", "fsrcnn")])
def test_opencv_peers_load_and_upscale(name, algo):
    """The peer baselines of the evaluation table and bench/speed.py load in the installed OpenCV
    (5.1.0 read their TensorFlow .pb as ONNX and failed; pyproject pins it below 5.1)."""
    from model import data as D
    from model import evaluate as E

    if not (D.peers_dir() / f"{name}.pb").is_file():
        pytest.skip(f"peer weights absent: {D.peers_dir() / name}.pb (../shared/data beside the checkout)")
    sr = E.load_peer(name, algo)
    lr = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32)
    (out,) = E.peer_upscale(sr, [lr])
    assert out.shape == (48, 40, 3) and out.dtype == np.uint8
