"""The shipped weights through the service path, and the quality cost of the default fast path.

Skips when model/weights/espcn_rb_x4.pt (the default) is not there yet, or when ../shared/data (val faces)
is absent.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402

DATA = Path(os.environ.get("PORTRAIT_DATA_DIR", ROOT.parent / "shared" / "data"))
VAL = DATA / "faces" / "val"

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(),
                                reason=f"shipped weights absent: {DEFAULT_WEIGHTS}")


def test_shipped_weights_load_with_their_card():
    up = Upscaler.from_weights(device="cpu")
    assert up.name and up.version and up.device == "cpu"
    out = up.upscale(np.full((30, 32, 3), 128, np.uint8))
    assert out.shape == (120, 128, 3)
    # A flat photo stays flat away from the edges (zero padding darkens the net's view of those).
    assert np.abs(out[16:-16, 16:-16].astype(int) - 128).max() <= 1


@pytest.mark.data
@pytest.mark.skipif(not VAL.is_dir(), reason=f"face data absent: {VAL} (../shared/data beside the checkout)")
def test_default_path_costs_at_most_0_02_db_on_val_faces():
    """The CPU default (the 8-bit path: OpenVINO int8 or bf16, or torch bf16 without openvino) against
    torch fp32 on the float path."""
    from skimage.transform import pyramid_reduce

    from model import data as D
    from model import metrics as M

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hrs = [D.seed_hr(D.decode(p)) for p in sorted(VAL.glob("*.jpg"))[:30]]
        lrs = [np.clip(np.rint(pyramid_reduce(h, downscale=4, channel_axis=-1) * 255), 0, 255)
               .astype(np.uint8) for h in hrs]
        psnr = {}
        for name, up in {"fp32": Upscaler.from_weights(device="cpu", precision="fp32", backend="torch",
                                                       fast_8bit=False),
                         "default": Upscaler.from_weights(device="cpu")}.items():
            psnr[name] = np.mean([M.y_psnr(up.upscale(lr), hr) for lr, hr in zip(lrs, hrs)])
    finally:
        torch.set_num_threads(threads)
    assert psnr["fp32"] - psnr["default"] <= 0.02, psnr
