"""What POST /v1/faces costs the API process, against what POST /v1/jobs already spends on the same upload.

    python bench/faces_api.py                       # 200, 500, 1000, 2000 px photos; 7 interleaved rounds
    python bench/faces_api.py --sizes 3000 --rounds 5
    python -m bench faces_api [args]                # the same

For each size, a group photo composed as bench/faces.py composes them (3–5 val faces 150–300 px wide
on a cluttered scene, the first such composition of the report split), scaled so its long side is
that many pixels, JPEG q90. Each round times, interleaved, on the
same bytes and in this process (no HTTP server, no database: the view's own work):

- `jobs check`: `api.uploads.read_upload`, what POST /v1/jobs does before storing (probe, decode);
  the baseline, measured in the same run;
- `faces`: `api.uploads.read_photo` + `model.faces.find_portraits`, what POST /v1/faces does.

Prints median wall and CPU milliseconds per call, and faces / jobs check: the extra cost of a faces
request over a submit's upload check. The detector's one-off load (first call in a process) is
timed separately. Needs ../shared/data/faces/val (or $PORTRAIT_DATA_DIR).
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.uploads import read_photo, read_upload  # noqa: E402
from bench.faces import SPLITS, VAL, compose  # noqa: E402
from bench.speed import cpu_header  # noqa: E402
from model import faces  # noqa: E402
from shared.settings import Settings  # noqa: E402


class Upload:
    """The part of werkzeug's FileStorage that api.uploads reads."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self) -> bytes:
        return self.data


def photo(long_side: int) -> bytes:
    """The first composition whose faces are all from the 150–300 px bucket (so a small photo still has
    faces), long side `long_side`, JPEG q90."""
    vals = sorted(VAL.glob("*.jpg"))[SPLITS["report"][0]]
    for index in range(1000, 1100):
        rgb, truths = compose(np.random.default_rng((SPLITS["report"][1], index)), vals)
        if min(t.box[2] for t in truths) >= 150:
            break
    s = long_side / max(rgb.shape[:2])
    rgb = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,500,1000,2000", help="long sides in px, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if not VAL.is_dir():
        print(f"face data absent: {VAL}", file=sys.stderr)
        return 2
    settings = Settings()
    print(f"{cpu_header()}; load {os.getloadavg()[0]:.2f} at the start")
    print(f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), {faces.describe()['detector']}")
    load_ms, _ = timed(lambda: faces.find_faces(np.zeros((64, 64, 3), np.uint8)))
    print(f"detector load + first call: {load_ms:.0f} ms (once per API process)\n")

    def jobs_check(data):
        return read_upload(Upload(data), settings)

    def faces_request(data):
        upload, pixels = read_photo(Upload(data), settings)
        return faces.find_portraits(pixels)

    print("| photo | MP | faces found | jobs check ms (CPU) | faces ms (CPU) | faces / jobs check |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        data = photo(size)
        w, h = Image.open(io.BytesIO(data)).size
        found = len(faces_request(data))
        times = {"jobs": [], "faces": []}
        for _ in range(args.rounds):
            times["jobs"].append(timed(lambda: jobs_check(data)))
            times["faces"].append(timed(lambda: faces_request(data)))
        med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
               for k, v in times.items()}
        print(f"| {w}x{h} | {w * h / 1e6:.2f} | {found} | {med['jobs'][0]:.1f} ({med['jobs'][1]:.1f}) | "
              f"{med['faces'][0]:.1f} ({med['faces'][1]:.1f}) | {med['faces'][0] / med['jobs'][0]:.1f}x |")
    print(f"\nload {os.getloadavg()[0]:.2f} at the end; medians of {args.rounds} interleaved rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
