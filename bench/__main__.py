"""`python -m bench NAME [args]` (what `make bench BENCH_ARGS="NAME ..."` runs), NAME one of:

- speed: CPU output megapixels/s of the shipped model's inference paths vs the OpenCV ESPCN peer.
- gpu: the CUDA path's MP/s by batch size and precision (exits 2 without CUDA).
- faces: face detection recall and false positives on group photos composed from val faces.
- faces_api: what POST /v1/faces costs the API process, against a submit's upload check.
- chaos: N jobs, K kill -9s and a Redis restart; lost / finished twice / recovery time.
- train_step: training step time, fp32 vs the bf16 forward.
- poll_cpu: CPU ms of one job poll in the API process, key cache off vs on.
- poll_load: GET /v1/jobs/<id> latency at fixed request rates against gunicorn (and POST /v1/jobs).
- job_overhead: submit → poll sees `succeeded` through the real processes vs the model alone (512²).
- transitions: Python CPU and wall ms of a job's claimable read, claim and success against Postgres.
- cold_start: the first job after a worker starts, model loaded at start (MODEL_PRELOAD) vs on that job.
- drain: one worker draining 200 queued 128² jobs vs the model alone on the same images.
- layers: per-layer time of the shipped int8 network (OpenVINO's counters) on this CPU.
- ceiling: the default's network alone vs its whole upscale and the peer: the most it could reach.
- batch: the default's network on batches of small photos, per photo, vs one at a time.
- rgb8_tail: the 8-bit path's tail (residual → 8-bit photo) now vs one-thread finish vs before.
- png: time and size of the worker's PNG encoder vs zlib, Pillow and OpenCV on real results.
- decode: the worker's isolated decode vs in-process decoding.
- profile_summary: a py-spy profile of the worker (drain/job_overhead --profile) by part of the service.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCHES = {name: f"{name}.py" for name in (
    "speed", "gpu", "faces", "faces_api", "ensemble", "chaos", "train_step", "poll_cpu", "poll_load",
    "job_overhead", "cold_start", "drain", "transitions", "layers", "ceiling", "batch", "rgb8_tail", "png", "decode",
    "profile_summary")}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(__doc__)
        return 2
    name = sys.argv.pop(1)
    sys.argv[0] = f"bench/{BENCHES[name]}"
    runpy.run_path(str(Path(__file__).parent / BENCHES[name]), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
