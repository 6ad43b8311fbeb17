"""Upscaler: tiled == untiled, shapes, colour/alpha/16-bit handling, half precision and its fallback.

These run on the default backend (OpenVINO on CPU where it is installed); test_openvino_backend.py
compares it with torch.
"""
from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import Upscaler, decode_image, encode_png  # noqa: E402
from model.espcn import ESPCN, ESPCNConfig, count_parameters  # noqa: E402
from model.images import RGB_TO_YCC, YCC_TO_RGB  # noqa: E402
from model.tiling import plan_tiles  # noqa: E402



CONFIGS = {  # name → (config, colour convention)
    "seed_rgb": (ESPCNConfig(), "rgb"),
    "residual_rgb": (ESPCNConfig(residual=True), "rgb"),
    "luma_residual": (ESPCNConfig(channels=1, residual=True), "y_bt601"),
    "luma_small": (ESPCNConfig(channels=1, widths=(8, 8), first_kernel=3), "y_bt601"),
    "luma_deep_9x9": (ESPCNConfig(channels=1, widths=(64, 64, 64, 32, 32), first_kernel=9, residual=True),
                      "y_bt601"),
    "luma_blocks": (ESPCNConfig(channels=1, widths=(8, 8), first_kernel=5, residual=True, blocks=2),
                    "y_bt601"),
}


def make_net(name: str, seed: int = 0) -> tuple[ESPCN, str]:
    config, color = CONFIGS[name]
    torch.manual_seed(seed)
    net = ESPCN(config).eval()
    with torch.no_grad():  # random init stays near 0; a bias keeps outputs away from the clamp
        net.body[-1].bias.add_(0.3)
    return net, color


def image(h: int, w: int, c: int = 3, dtype=np.uint16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = 0.5 + 0.3 * np.sin(6 * x[..., None] + np.arange(c)) * np.cos(5 * y[..., None])
    a = np.clip(smooth + rng.normal(0, 0.05, (h, w, c)), 0, 1)
    return np.rint(a * np.iinfo(dtype).max).astype(dtype)


def reference(net: ESPCN, color: str, img: np.ndarray) -> np.ndarray:
    """Untiled float result straight from ESPCN.forward (+ torch bicubic chroma), clamped to [0, 1]."""
    x = torch.from_numpy(img.astype(np.float64) / np.iinfo(img.dtype).max).float()
    with torch.no_grad():
        if color == "rgb":
            return net(x.permute(2, 0, 1)[None])[0].permute(1, 2, 0).clamp(0, 1).numpy()
        ycc = x @ torch.from_numpy(RGB_TO_YCC).T
        y = net(ycc[..., :1].permute(2, 0, 1)[None])
        up = F.interpolate(ycc.permute(2, 0, 1)[None], scale_factor=4, mode="bicubic", align_corners=False)
        ycc_hr = torch.cat([y, up[:, 1:]], 1)[0].permute(1, 2, 0)
        return (ycc_hr @ torch.from_numpy(YCC_TO_RGB).T).clamp(0, 1).numpy()


# ------------------------------------------------------------------------------------------ tiling
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("size,tiles", [((37, 53), (7, 16, 1000)), ((300, 129), (64, 100))])
def test_tiled_equals_untiled(name, size, tiles):
    net, color = make_net(name)
    img = image(*size)
    ref = reference(net, color, img)
    for tile in tiles:
        up = Upscaler(net, color=color, device="cpu", tile=tile, precision="fp32", batch_size=3)
        out = up.upscale(img)
        assert out.shape == (size[0] * 4, size[1] * 4, 3) and out.dtype == np.uint16
        # 16-bit output carries the float result to 7.6e-6; the rest of 1e-4 is for tiling.
        assert np.abs(out / 65535.0 - ref).max() < 1e-4, (name, size, tile)


@pytest.mark.parametrize("h,w,tile,margin",
                         [(37, 53, 7, 6), (300, 129, 64, 8), (5, 3, 2, 6), (257, 256, 256, 8)])
def test_tile_plan_covers_image_with_real_context(h, w, tile, margin):
    plan, (ch, cw) = plan_tiles(h, w, tile, margin)
    covered = np.zeros((h, w), int)
    for t in plan:
        covered[t.y0:t.y1, t.x0:t.x1] += 1
        assert 0 <= t.cy and t.cy + ch <= h and 0 <= t.cx and t.cx + cw <= w  # a crop, never padding
        assert t.cy <= max(t.y0 - margin, 0) and t.cy + ch >= min(t.y1 + margin, h)
        assert t.cx <= max(t.x0 - margin, 0) and t.cx + cw >= min(t.x1 + margin, w)
        assert t.y1 - t.y0 <= tile and t.x1 - t.x0 <= tile
    assert (covered == 1).all()


def test_batches_and_single_tiles_agree():
    net, color = make_net("luma_small")
    img = image(70, 90, dtype=np.uint8)
    one = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32", batch_size=1).upscale(img)
    many = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32", batch_size=8).upscale(img)
    assert np.array_equal(one, many)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_body_is_the_module_in_nhwc(precision):
    net, color = make_net("seed_rgb")
    up = Upscaler(net, color=color, device="cpu", precision=precision, backend="torch")
    x = np.random.default_rng(0).random((2, 21, 17, 3), dtype=np.float32)
    with torch.no_grad():
        ref = net.shuffle(net.body(torch.from_numpy(x).permute(0, 3, 1, 2))).permute(0, 2, 3, 1).numpy()
    tol = 1e-5 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(up._fast(x), ref, atol=tol, rtol=tol)


def test_auto_backend_is_torch_without_openvino(monkeypatch):
    from model import openvino_backend

    monkeypatch.setattr(openvino_backend, "available", lambda: False)
    net, color = make_net("luma_small")
    up = Upscaler(net, color=color, device="cpu", tile=16)
    assert up.backend == "torch"
    assert up.upscale(image(20, 20, 3, np.uint8)).shape == (80, 80, 3)
    with pytest.raises(ValueError, match="not installed"):
        Upscaler(net, color=color, device="cpu", backend="openvino")
    with pytest.raises(ValueError, match="int8"):
        Upscaler(net, color=color, device="cpu", precision="int8", int8_model=object())


# ------------------------------------------------------------------------------- channels & dtypes
@pytest.mark.parametrize("name", ["seed_rgb", "luma_residual"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_output_keeps_size_channels_and_dtype(name, channels, dtype):
    net, color = make_net(name)
    img = image(19, 23, channels, dtype)
    out = Upscaler(net, color=color, device="cpu", tile=8, precision="fp32").upscale(img)
    assert out.shape == (76, 92, channels) and out.dtype == dtype
    flat = Upscaler(net, color=color, device="cpu", tile=8, precision="fp32").upscale(img[..., 0])
    assert flat.shape == (76, 92) and flat.dtype == dtype  # a 2-D gray image stays 2-D


@pytest.mark.parametrize("name", ["seed_rgb", "luma_residual"])
def test_gray_is_the_luma_of_the_replicated_rgb(name):
    net, color = make_net(name)
    up = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32")
    gray = image(30, 20, 1, np.uint16)
    rgb_out = up.upscale(np.repeat(gray, 3, axis=2)).astype(np.float64)
    luma = rgb_out @ RGB_TO_YCC[0].astype(np.float64)
    assert np.abs(up.upscale(gray)[..., 0] - luma).max() <= 2  # 16-bit levels: rounding only


def test_alpha_is_bicubic_and_colour_is_untouched_by_it():
    import cv2

    net, color = make_net("luma_residual")
    up = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32")
    rgba = image(24, 28, 4, np.uint8)
    out = up.upscale(rgba)
    assert np.array_equal(out[..., :3], up.upscale(rgba[..., :3]))
    expected = cv2.resize(rgba[..., 3].astype(np.float32) / 255, (112, 96), interpolation=cv2.INTER_CUBIC)
    assert np.abs(out[..., 3].astype(int) - np.clip(np.rint(expected * 255), 0, 255)).max() <= 1


def test_16bit_input_is_not_rounded_to_8_bits():
    net, color = make_net("seed_rgb")
    img = image(20, 20, 3, np.uint16)
    img[img % 257 == 0] += 1  # no value an 8-bit image could hold
    out = Upscaler(net, color=color, device="cpu", tile=64, precision="fp32").upscale(img)
    assert np.abs(out / 65535.0 - reference(net, color, img)).max() < 1e-4
    eight = Upscaler(net, color=color, device="cpu", tile=64, precision="fp32").upscale(
        np.rint(img / 257).astype(np.uint8))
    assert not np.array_equal(out, eight.astype(np.uint16) * 257)


@pytest.mark.parametrize("make", ["gray", "gray_alpha", "rgba", "rgb16", "palette", "cmyk", "exif"])
def test_decode_upscale_encode_round_trip(make):
    from PIL import Image

    def pil_bytes(im, fmt="PNG", **params):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **params)
        return buf.getvalue()

    def gradient(h, w, dtype=np.uint8):
        return image(h, w, 3, dtype, seed=3)

    expected = {"gray": (1, np.uint8), "gray_alpha": (2, np.uint8), "rgba": (4, np.uint8),
                "rgb16": (3, np.uint16), "palette": (3, np.uint8), "cmyk": (3, np.uint8),
                "exif": (3, np.uint8)}
    rgb = gradient(h=12, w=10)
    if make == "rgb16":
        data = encode_png(gradient(h=12, w=10, dtype=np.uint16))
    elif make == "exif":
        im = Image.fromarray(rgb)
        exif = im.getexif()
        exif[0x0112] = 6
        data = pil_bytes(im, "JPEG", exif=exif.tobytes())
    else:
        mode = {"gray": "L", "gray_alpha": "LA", "rgba": "RGBA", "palette": "P", "cmyk": "CMYK"}[make]
        data = pil_bytes(Image.fromarray(rgb).convert(mode), "JPEG" if make == "cmyk" else "PNG")
    pixels = decode_image(data)
    net, color = make_net("luma_small")
    out = Upscaler(net, color=color, device="cpu", tile=8).upscale(pixels)
    back = decode_image(encode_png(out, dpi=(300, 300)))
    channels, dtype = expected[make]
    h, w = (10, 12) if make == "exif" else (12, 10)
    assert back.shape == (4 * h, 4 * w, channels) and back.dtype == dtype and np.array_equal(back, out)


# -------------------------------------------------------------------------------- precision & GPU
def test_bf16_is_close_to_fp32():
    net, color = make_net("luma_residual")
    img = image(40, 40, 3, np.uint8)
    fp32 = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32").upscale(img)
    bf16 = Upscaler(net, color=color, device="cpu", tile=16, precision="bf16").upscale(img)
    assert np.abs(fp32.astype(int) - bf16.astype(int)).max() <= 3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_non_finite_half_output_falls_back_to_fp32(precision, caplog):
    net, color = make_net("seed_rgb")
    img = image(30, 40, 3, np.uint8)
    reference_up = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32")
    up = Upscaler(net, color=color, device="cpu", tile=16, precision=precision, batch_size=2)
    half = up._fast
    calls = []

    def poisoned(x):  # a half-precision overflow, as fp16 can produce on a bright tile
        calls.append(x.shape[0])
        y = half(x)
        y[0, 0, 0, 0] = float("inf") if len(calls) % 2 else float("nan")
        return y

    up._fast = poisoned
    with caplog.at_level(logging.WARNING, logger="model.upscaler"):
        out = up.upscale(img)
    tiles = len(plan_tiles(30, 40, 16, up.margin)[0])
    assert calls == [2] * (tiles // 2) + [1] * (tiles % 2)  # same-size tiles are batched
    assert up.fallback_batches == len(calls)
    assert np.array_equal(out, reference_up.upscale(img))
    assert "redoing it in fp32" in caplog.text


def test_device_and_precision_choice():
    net, color = make_net("luma_small")
    up = Upscaler(net, color=color, device="auto")
    assert up.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert up.precision in ("fp32", "bf16", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            Upscaler(net, color=color, device="cuda")
    with pytest.raises(ValueError):
        Upscaler(net, color="rgb", device="cpu")  # a luma net is not an RGB net
    with pytest.raises(ValueError, match="quantized model"):
        Upscaler(net, color=color, device="cpu", precision="int8")  # int8 needs <name>.int8.xml
    with pytest.raises(ValueError, match="backend"):
        Upscaler(net, color=color, device="cpu", backend="onnx")


# ------------------------------------------------------------------------------- progress & cancel
def test_progress_reports_tiles_and_an_exception_cancels():
    net, color = make_net("luma_small")
    up = Upscaler(net, color=color, device="cpu", tile=10, batch_size=2)
    seen = []
    up.upscale(image(30, 30), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 9), (2, 9), (4, 9), (6, 9), (8, 9), (9, 9)]

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done >= 4:
            raise Cancelled

    with pytest.raises(Cancelled):
        up.upscale(image(30, 30), progress=cancel)


# ----------------------------------------------------------------------------------------- weights
def write_weights(folder: Path, name="luma_small", **card_overrides) -> Path:
    net, color = make_net(name)
    path = folder / "espcn_test.pt"
    torch.save(net.state_dict(), path)
    card = {"name": "espcn_test", "version": "9.9.9", "architecture": net.config.to_dict(),
            "parameters": count_parameters(net), "color": color} | card_overrides
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_from_weights_reads_the_card(tmp_path):
    up = Upscaler.from_weights(write_weights(tmp_path), device="cpu", tile=32)
    assert (up.name, up.version, up.device, up.tile) == ("espcn_test", "9.9.9", "cpu", 32)
    assert up.color == "y_bt601"
    assert up.upscale(image(9, 11, 3, np.uint8)).shape == (36, 44, 3)


def test_from_weights_refuses_inconsistent_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Upscaler.from_weights(tmp_path / "absent.pt")
    path = write_weights(tmp_path, parameters=123)
    with pytest.raises(ValueError, match="parameters"):
        Upscaler.from_weights(path, device="cpu")
    path = write_weights(tmp_path, color="rgb")
    with pytest.raises(ValueError, match="color"):
        Upscaler.from_weights(path, device="cpu")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="model card"):
        Upscaler.from_weights(path, device="cpu")
