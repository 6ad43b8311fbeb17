"""int8 for the OpenVINO backend: NNCF post-training quantization, saved as OpenVINO IR beside the weights.

    pip install nncf==3.4.0       # only to make the file; the service needs only openvino to read it
    python -m model.quantize      # model/weights/espcn_rb_x4.pt → espcn_rb_x4.int8.xml + .bin (~10 s)
    python -m model.quantize --weights model/weights/espcn_x4.pt   # the same for 1.1.0

The graph is the 8-bit one of model/rgb8.py: 8-bit RGB in (a 1x1 conv makes BT.601 luma), the luma
residual out. Calibration: the last 300 faces of faces/val (the first 700, where bench/speed.py
measures, stay unseen), 176² HR → 44² 8-bit LR through the four evaluation degradations in turn. Every
conv runs in int8 (weights per channel, activations per tensor, fast bias correction) but the luma 1x1,
the net's first (its input is the image itself: int8 there cost 0.01–0.02 dB val Y-PSNR and saved 1.5
of 24 ms) and its last (the residual itself); the float ones run in bf16 where the CPU has it.

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
GRAPH = "rgb8_planes"  # the graph it quantizes: 8-bit RGB in, the luma residual's NCHW planes out (model/rgb8.py)


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
    made_from, graph = (model.get_rt_info([META, key]).astype(str) if model.has_rt_info([META, key]) else ""
                        for key in ("weights_sha256", "graph"))
    if made_from != sha256(weights):
        log.warning("ignoring %s: it was made from other weights than %s (rerun python -m model.quantize)",
                    path, weights)
        return None
    if graph != GRAPH:
        log.warning("ignoring %s: it holds the %s graph, not %s (rerun python -m model.quantize)",
                    path, graph or "float luma", GRAPH)
        return None
    return model


def calibration_inputs(limit: int = CALIBRATION_FACES) -> list[np.ndarray]:
    """(1, 44, 44, 3) uint8 RGB graph inputs from the last `limit` val faces, degradations in turn."""
    from model import data as D
    from model import degrade as G

    inputs = []
    for i, path in enumerate(D.list_images("val")[-limit:]):
        name = G.EVAL_DEGRADATIONS[i % len(G.EVAL_DEGRADATIONS)]
        lr = G.degrade_named(D.seed_hr(D.decode(path)), name, np.random.default_rng([7, i]))
        inputs.append(np.ascontiguousarray(G.quantize(lr)[None]))  # an 8-bit photo, as Upscaler feeds it
    return inputs


def quantize(layers, scale: int, inputs: list[np.ndarray]):
    """NNCF PTQ of the 8-bit RGB graph of `layers` (model/rgb8.py): every conv in int8 but the luma 1x1,
    the net's first (it reads the image itself) and its last (it writes the residual)."""
    import nncf

    from model.openvino_backend import build_model

    model = build_model(layers, 1, scale, rgb8=True)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs), fast_bias_correction=True,
                         preset=nncf.QuantizationPreset.MIXED,
                         ignored_scope=nncf.IgnoredScope(names=[*convs[:2], convs[-1]]))


def export(weights: Path, limit: int = CALIBRATION_FACES) -> Path:
    """Quantize the net of `weights` (with its card) and write `<name>.int8.xml/.bin` beside it."""
    import nncf
    import openvino as ov

    from model.upscaler import Upscaler

    up = Upscaler.from_weights(weights, device="cpu", precision="fp32", backend="torch")
    if not (up.color == "y_bt601" and up.config.residual):
        raise ValueError(f"{weights}: int8 is made for luma residual nets only (the 8-bit RGB graph)")
    model = quantize(up._layers, up.scale, calibration_inputs(limit))
    meta = {"weights": weights.name, "weights_sha256": sha256(weights), "model": f"{up.name} {up.version}",
            "graph": GRAPH,
            "calibration": f"last {limit} faces/val, 44x44 8-bit RGB LR, first conv kept in float",
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
