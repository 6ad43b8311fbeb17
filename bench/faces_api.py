"""What POST /v1/faces costs the API process, against what POST /v1/jobs already spends on the same upload.

    python bench/faces_api.py                       # 200, 500, 1000, 2000 px photos; 7 interleaved rounds
    python bench/faces_api.py --sizes 200,500,1000,2000,4000     # the README's run
    python -m bench faces_api [args]                # the same

For each size, a group photo composed as bench/faces.py composes them (3–5 val faces 150–300 px wide
on a cluttered scene, the first such composition of the report split), scaled so its long side is
that many pixels, JPEG q90. Each round times, interleaved, on the
same bytes and in this process (no HTTP server, no database: the view's own work):

- `jobs check`: `api.uploads.read_upload`, what POST /v1/jobs does before storing (probe, decode);
  the baseline, measured in the same run;
- `faces`: `api.uploads.read_photo` + `model.faces.find_portraits`, what POST /v1/faces does (the
  decode in a throwaway child process, worker/decode_guard.py; its forkserver starts once, untimed);
- `faces, decode here`: the same with the decode in this process, as the upload check does it: what
  the child costs.

Prints median wall and CPU milliseconds per call (CPU of this process: a decoder child's is not
counted), faces / jobs check (what a faces request costs over a submit's upload check) and faces /
decode here (what isolating the decode costs). The detector's one-off load (first call in a process) is
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
# The project is imported in main(), not here: each decoder child re-imports this script as its main
# module (multiprocessing's forkserver), and should find nothing heavy to import (torch, via bench.speed).


class Upload:
    """The part of werkzeug's FileStorage that api.uploads reads."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self) -> bytes:
        return self.data


def photo(long_side: int) -> bytes:
    """The first composition whose faces are all from the 150–300 px bucket (so a small photo still has
    faces), long side `long_side`, JPEG q90."""
    from bench.faces import SPLITS, VAL, compose

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
    from api.uploads import _read, read_photo, read_upload
    from bench.faces import VAL
    from bench.speed import cpu_header
    from model import faces
    from shared.settings import Settings

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

    def faces_decoded_here(data):
        upload, pixels = _read(Upload(data), settings, crop=None, upscaled=False, isolated=False)
        return faces.find_portraits(pixels)

    rows = {"jobs": jobs_check, "faces": faces_request, "here": faces_decoded_here}
    faces_request(photo(200))  # starts the decoder's forkserver (once per process)

    print("| photo | MP | faces found | jobs check ms (CPU) | faces ms (CPU) | faces / jobs check | "
          "faces, decode here ms (CPU) | faces / decode here |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        data = photo(size)
        w, h = Image.open(io.BytesIO(data)).size
        found = len(faces_request(data))
        times = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, fn in rows.items():
                times[name].append(timed(lambda: fn(data)))
        med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
               for k, v in times.items()}
        print(f"| {w}x{h} | {w * h / 1e6:.2f} | {found} | {med['jobs'][0]:.1f} ({med['jobs'][1]:.1f}) | "
              f"{med['faces'][0]:.1f} ({med['faces'][1]:.1f}) | {med['faces'][0] / med['jobs'][0]:.1f}x | "
              f"{med['here'][0]:.1f} ({med['here'][1]:.1f}) | {med['faces'][0] / med['here'][0]:.2f}x |")
    print(f"\nload {os.getloadavg()[0]:.2f} at the end; medians of {args.rounds} interleaved rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
