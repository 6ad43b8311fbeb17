"""Peak memory of a 12 MP photo (3000x4000 → 12000x16000): the output array plus bounded tile buffers.

A tiny net keeps this fast (~5 s); memory does not depend on the net's width beyond one tile's
activations. `python bench/speed.py --rss` reports the same figure for the shipped net.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
import numpy as np, torch
torch.set_num_threads(1)
from model.espcn import ESPCN, ESPCNConfig
from model.upscaler import Upscaler
net = ESPCN(ESPCNConfig(channels=1, widths=(4,), first_kernel=3, residual=True)).eval()
up = Upscaler(net, color="y_bt601", device="cpu", tile=256)
img = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
def peak_kib():  # VmHWM: ru_maxrss would start at the RSS pytest had when it forked this child
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
before = peak_kib()
out = up.upscale(img)
assert out.shape == (12000, 16000, 3) and out.dtype == np.uint8
print(before, peak_kib(), out.nbytes)
"""


def test_12mp_photo_stays_far_under_4_gb():
    res = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    before_kib, peak_kib, out_bytes = map(int, res.stdout.split())
    peak, growth = peak_kib * 1024, (peak_kib - before_kib) * 1024
    assert peak < 4 * 2**30
    # The 549 MiB output is the only image-sized allocation; tiles add a few tens of MiB.
    assert growth < out_bytes + 200 * 2**20, (growth, out_bytes)
