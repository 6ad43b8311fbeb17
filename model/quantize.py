"""int8 for the OpenVINO backend: NNCF post-training quantization, saved as OpenVINO IR beside the weights.

    pip install nncf==3.4.0       # only to make the file; the service needs only openvino to read it
    python -m model.quantize      # model/weights/espcn_x4.pt → espcn_x4.int8.xml + .bin (~10 s)

Calibration: the last 300 faces of faces/val (the first 700, where bench/speed.py measures, stay
unseen), 176² HR → 44² 8-bit LR through the four evaluation degradations in turn, as the net sees
them (Y of BT.601 for a luma net). Every conv but the first runs in int8 (weights per channel,
activations per tensor, fast bias correction). The first conv's input is the image itself: int8
there cost 0.03–0.05 dB val Y-PSNR, in float the whole net costs ≤ 0.01 dB (bench/README.md).

The IR records the sha256 of the `.pt` it was made from, and `load_int8` ignores a file made from
other weights, so retrained weights never run with stale int8 ranges: rerun this after an export.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_FACES = 300
META = "memorial_portraits"  # rt_info section of the IR


def int8_path(weights: Path) -> Path:
    """`<name>.pt` → `<name>.int8.xml` (its `.bin` beside it)."""
    return weights.with_name(weights.stem + ".int8.xml")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_int8(weights: Path):
    """The int8 `openvino.Model` made from exactly these weights, or None (absent, or stale)."""
    from model import openvino_backend as ov_backend

    path = int8_path(Path(weights))
    if not path.is_file() or not ov_backend.available():
        return None
    model = ov_backend.core().read_model(path)
    made_from = model.get_rt_info([META, "weights_sha256"]).astype(str) if model.has_rt_info(
        [META, "weights_sha256"]) else ""
    if made_from != sha256(weights):
        log.warning("ignoring %s: it was made from other weights than %s (rerun python -m model.quantize)",
                    path, weights)
        return None
    return model


def calibration_inputs(color: str, limit: int = CALIBRATION_FACES) -> list[np.ndarray]:
    """(1, 44, 44, C) float32 net inputs from the last `limit` val faces, degradations in turn."""
    from model import data as D
    from model import degrade as G
    from model.images import RGB_TO_YCC, color_transform

    inputs = []
    for i, path in enumerate(D.list_images("val")[-limit:]):
        name = G.EVAL_DEGRADATIONS[i % len(G.EVAL_DEGRADATIONS)]
        lr = G.degrade_named(D.seed_hr(D.decode(path)), name, np.random.default_rng([7, i]))
        lr = G.quantize(lr).astype(np.float32) * np.float32(1 / 255)  # as Upscaler feeds an 8-bit photo
        x = color_transform(lr, RGB_TO_YCC)[..., :1] if color == "y_bt601" else lr
        inputs.append(np.ascontiguousarray(x[None]))
    return inputs


def quantize(layers, channels: int, scale: int, inputs: list[np.ndarray]):
    """NNCF PTQ of `build_model(layers)`: every conv in int8 except the first."""
    import nncf

    from model.openvino_backend import build_model

    model = build_model(layers, channels, scale)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs), fast_bias_correction=True,
                         preset=nncf.QuantizationPreset.MIXED, ignored_scope=nncf.IgnoredScope(names=convs[:1]))


def export(weights: Path, limit: int = CALIBRATION_FACES) -> Path:
    """Quantize the net of `weights` (with its card) and write `<name>.int8.xml/.bin` beside it."""
    import nncf
    import openvino as ov

    from model.upscaler import Upscaler

    up = Upscaler.from_weights(weights, device="cpu", precision="fp32", backend="torch")
    model = quantize(up._layers, up.config.channels, up.scale, calibration_inputs(up.color, limit))
    meta = {"weights": weights.name, "weights_sha256": sha256(weights), "model": f"{up.name} {up.version}",
            "calibration": f"last {limit} faces/val, 44x44 LR, {up.color}, first conv kept in float",
            "nncf": nncf.__version__, "openvino": ov.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    for key, value in meta.items():
        model.set_rt_info(value, [META, key])
    out = int8_path(weights)
    ov.save_model(model, out, compress_to_fp16=False)
    return out


def main(argv: list[str] | None = None) -> int:
    from model.upscaler import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--faces", type=int, default=CALIBRATION_FACES, help="calibration faces (default 300)")
    args = p.parse_args(argv)
    print(f"wrote {export(args.weights, args.faces)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
