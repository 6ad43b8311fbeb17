"""Cold start: how long the first job after a worker starts takes, with the model loaded as the worker
starts (MODEL_PRELOAD=true, the default) and by the first job (false), against a warm job.

    python bench/cold_start.py                 # 512² faces, 3 rounds, the first job 3 s after "ready"
    python bench/cold_start.py --idle 0        # the first job the moment the stack is ready

Round after round, for each setting in turn (the order alternates from round to round): start the
whole service (bench/service.py: the Procfile under honcho with its own database, Redis and bucket)
with that MODEL_PRELOAD, wait until the worker says `ready.` and the API answers /readyz (what
`make run`'s users and the tests wait for), then `--idle` seconds more (a worker started before the
traffic comes: a deploy, a restart), then submit one val face and long-poll until it has succeeded:
the first job's time. Then `--warm` more faces, one at a time: a warm job's time, on the same worker.
first − warm is what the first family after a start waits for it. The model's load time is read off
the worker's own "loaded model ... in N s" line. The bench writes one 2.5 MB object into the fresh
S3 server before the first job: in production the object store outlives a deploy.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_overhead import run_job  # noqa: E402
from bench.service import face_images, median, running_service  # noqa: E402
from bench.speed import cpu_header  # noqa: E402

PARTS = ("total", "post", "queue", "worker", "lag")  # bench.job_overhead.run_job's split of a job
LOAD_LINE = re.compile(r"loaded model .* in (\d+(?:\.\d+)?) s")


def one_start(preload: bool, images: list[bytes], idle: float, wait: float) -> dict:
    """Start the service with MODEL_PRELOAD=`preload`; the first job's and the warm jobs' seconds."""
    from shared.storage import Storage

    with running_service(model_preload=preload) as service:
        # The S3 server outlives a deploy (MinIO in production); a fresh `weed mini`'s first large write
        # is slow (the first job's POST was ~0.24 s slower without this). Not the service's start.
        storage = Storage(service.settings)
        storage.put("bench-warm-up", os.urandom(2_500_000), "application/octet-stream")
        storage.delete("bench-warm-up")
        time.sleep(idle)
        first = run_job(service.client, images[0], 0.01, wait)
        warm = [run_job(service.client, data, 0.01, wait) for data in images[1:]]
        loads = LOAD_LINE.findall(service.stack.process_log("worker"))
    return {"first": first, "warm": {part: median([w[part] for w in warm]) for part in PARTS},
            "load": float(loads[0]) if loads else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="input edge in px (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="service starts per setting (default 3)")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds between the stack being ready and the first job (default 3)")
    parser.add_argument("--warm", type=int, default=3, help="warm jobs after the first (default 3)")
    parser.add_argument("--wait", type=float, default=20, help="long-poll seconds (GET ?wait=N; default 20)")
    args = parser.parse_args(argv)

    images = face_images(1 + args.warm, args.size)
    print(f"{cpu_header()}\nservice: Procfile under honcho (gunicorn 2x4 gthread, solo worker, TORCH_THREADS=2); "
          f"{args.size}² JPEG faces; the first job {args.idle:g} s after the stack is ready, then {args.warm} warm "
          f"jobs; {args.rounds} starts per setting, interleaved\n")
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(args.rounds):
        for preload in ((True, False) if r % 2 == 0 else (False, True)):
            runs[preload].append(one_start(preload, images, args.idle, args.wait))
    print("| MODEL_PRELOAD | first job ms (each start) | **first job ms** (median) | warm job ms (median) "
          "| **first − warm ms** | of which POST | queue | worker | poll lag | model load s (worker's log) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preload in (True, False):
        got = runs[preload]
        extra = {part: median([g["first"][part] - g["warm"][part] for g in got]) * 1000 for part in PARTS}
        each = ", ".join(f"{g['first']['total'] * 1000:.0f}" for g in got)
        print(f"| {str(preload).lower()} | {each} | **{median([g['first']['total'] for g in got]) * 1000:.0f}** "
              f"| {median([g['warm']['total'] for g in got]) * 1000:.0f} | **{extra['total']:.0f}** | "
              + " | ".join(f"{extra[part]:.0f}" for part in PARTS[1:])
              + f" | {median([g['load'] for g in got]):.1f} |")
    print("\nfirst − warm: the first job's time (and each part of it, from the job's own timestamps as in "
          "bench/job_overhead.py) minus the median warm job's, per start, median over the starts.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
