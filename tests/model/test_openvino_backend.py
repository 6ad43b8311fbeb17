"""The OpenVINO backend against torch: same output (fp32), close output (bf16, int8), same contract.

Skipped as a whole when the `openvino` package is absent (it is a dependency in pyproject.toml, so
`make test` installs it; the torch fallback is covered by test_upscaler.py).
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import openvino_backend as ov_backend  # noqa: E402
from model.quantize import int8_path, load_int8  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402
from tests.model.test_upscaler import CONFIGS, image, make_net  # noqa: E402

pytestmark = pytest.mark.skipif(not ov_backend.available(),
                                reason="openvino is not installed (pip install openvino==2026.4.1)")
VAL = Path(os.environ.get("PORTRAIT_DATA_DIR", ROOT.parent / "shared" / "data")) / "faces" / "val"
SHIPPED_INT8 = int8_path(DEFAULT_WEIGHTS)
needs_faces = pytest.mark.skipif(not (VAL.is_dir() and DEFAULT_WEIGHTS.is_file()),
                                 reason=f"val faces ({VAL}) or shipped weights ({DEFAULT_WEIGHTS}) absent")



def test_auto_is_openvino_on_cpu_and_torch_on_request():
    net, color = make_net("luma_small")
    assert Upscaler(net, color=color, device="cpu").backend == "openvino"
    assert Upscaler(net, color=color, device="cpu", backend="torch").backend == "torch"
    up = Upscaler(net, color=color, device="cpu", backend="openvino", precision="fp32")
    assert up.threads == 1 and up.upscale(image(9, 7, 3, np.uint8)).shape == (36, 28, 3)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fp32_equals_torch_fp32_tiled_and_untiled(name):
    net, color = make_net(name)
    img = image(70, 45, 3, np.uint16)
    ref = Upscaler(net, color=color, device="cpu", tile=1000, precision="fp32", backend="torch").upscale(img)
    for tile, batch in ((1000, 1), (16, 3)):
        up = Upscaler(net, color=color, device="cpu", tile=tile, precision="fp32", backend="openvino",
                      batch_size=batch)
        assert np.abs(up.upscale(img).astype(int) - ref).max() <= 2, (name, tile)  # 16-bit levels


@pytest.mark.skipif(not ov_backend.supports("bf16"), reason="this CPU has no native bf16")
def test_bf16_is_close_to_torch_fp32():
    net, color = make_net("luma_residual")
    img = image(40, 40, 3, np.uint8)
    fp32 = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32", backend="torch").upscale(img)
    bf16 = Upscaler(net, color=color, device="cpu", tile=16, precision="bf16", backend="openvino").upscale(img)
    assert np.abs(fp32.astype(int) - bf16.astype(int)).max() <= 3


def test_each_thread_has_its_own_request():
    net, color = make_net("luma_residual")
    up = Upscaler(net, color=color, device="cpu", tile=16, precision="fp32")
    imgs = [image(48, 40, 3, np.uint8, seed=i) for i in range(4)]
    expected = [up.upscale(img) for img in imgs]
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, up.upscale(imgs[i]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(got[i], expected[i]) for i in range(4))


# ------------------------------------------------------------------------------- the shipped model
def val_pairs(count: int):
    from model import evaluate as E

    hrs = E.val_hrs(count)
    return [E.to_uint8(lr) for lr in E.make_eval_set(hrs, degradations=("pyramid",))["pyramid"]], hrs


@pytest.mark.data
@needs_faces
def test_every_openvino_path_matches_torch_fp32_on_val_faces():
    from model import metrics as M

    lrs, hrs = val_pairs(20)
    torch_fp32 = Upscaler.from_weights(device="cpu", precision="fp32", backend="torch", fast_8bit=False)
    ref = [torch_fp32.upscale(lr) for lr in lrs]  # the float path: what the 8-bit path must equal
    ref_psnr = np.mean([M.y_psnr(o, h) for o, h in zip(ref, hrs)])
    # Measured on 100 faces (bench/speed.py --psnr 100, all protocols, largest difference over the 400
    # outputs), 8-bit path against this reference: 1.1.0 on the AMX Xeon fp32 1 level / ±0.000 dB, bf16
    # 1 / ≤ 0.002 dB, int8 22 / ≤ 0.007 dB; 2.0.0 on the AMD EPYC without AMX fp32 1 / ≤ 0.002 dB, bf16
    # 6 / ≤ 0.005 dB, int8 23 / ≤ 0.012 dB. The 20 pyramid faces here stay within the limits below.
    limits = {"fp32": 1, "bf16": 4, "int8": 32}
    for precision in [p for p in limits if p != "bf16" or ov_backend.supports("bf16")]:
        if precision == "int8" and load_int8(DEFAULT_WEIGHTS) is None:
            continue  # no int8 model for these weights: the float paths are what runs
        up = Upscaler.from_weights(device="cpu", precision=precision, backend="openvino")
        out = [up.upscale(lr) for lr in lrs]
        diff = max(int(np.abs(o.astype(int) - r).max()) for o, r in zip(out, ref))
        psnr = np.mean([M.y_psnr(o, h) for o, h in zip(out, hrs)])
        assert diff <= limits[precision] and abs(psnr - ref_psnr) <= 0.02, (precision, diff, psnr - ref_psnr)


@pytest.mark.skipif(not SHIPPED_INT8.is_file(), reason=f"no shipped int8 model at {SHIPPED_INT8}")
def test_int8_is_the_default_only_for_the_weights_it_was_made_from(tmp_path, caplog):
    up = Upscaler.from_weights(device="cpu")
    assert (up.backend, up.precision) == ("openvino", "int8")
    for src in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".json"), SHIPPED_INT8, SHIPPED_INT8.with_suffix(".bin")):
        shutil.copy(src, tmp_path / src.name)
    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    state["body.0.bias"] += 0.01  # retrained weights beside a stale int8 model
    torch.save(state, tmp_path / DEFAULT_WEIGHTS.name)
    stale = Upscaler.from_weights(tmp_path / DEFAULT_WEIGHTS.name, device="cpu")
    assert stale.precision != "int8" and "made from other weights" in caplog.text
    with pytest.raises(ValueError, match="quantized model"):
        Upscaler.from_weights(tmp_path / DEFAULT_WEIGHTS.name, device="cpu", precision="int8")


@pytest.mark.data
@needs_faces
def test_quantize_writes_an_int8_model_the_upscaler_loads(tmp_path):
    pytest.importorskip("nncf", reason="nncf makes the int8 model (pip install nncf==3.4.0)")
    from model.quantize import export

    for src in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".json")):
        shutil.copy(src, tmp_path / src.name)
    path = export(tmp_path / DEFAULT_WEIGHTS.name, limit=8)
    assert path == int8_path(tmp_path / DEFAULT_WEIGHTS.name) and path.with_suffix(".bin").is_file()
    up = Upscaler.from_weights(tmp_path / DEFAULT_WEIGHTS.name, device="cpu")
    assert up.precision == "int8"
    lrs, _ = val_pairs(2)
    ref = Upscaler.from_weights(device="cpu", precision="fp32", backend="torch")
    assert all(np.abs(up.upscale(lr).astype(int) - ref.upscale(lr)).max() <= 32 for lr in lrs)
