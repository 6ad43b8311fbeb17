"""Drain: how fast one worker empties a queue of small jobs, against the model alone on the same images.

    python bench/drain.py                              # 200 queued 128² jobs, 3 rounds
    python bench/drain.py --jobs 100 --size 256 --rounds 2
    python bench/drain.py --worker-threads 1           # the worker's model on one thread (alone: still 2)
    python bench/drain.py --rounds 1 --profile /tmp/drain --gil   # where the worker's Python time goes
    python bench/profile_summary.py /tmp/drain.1.raw --jobs 200   # ...by part of the service

Starts the real processes (bench/service.py). Each round: the worker stops consuming (Celery's
`cancel_consumer`, a remote-control command it answers between tasks), `--jobs` faces resized to size²
(JPEG q92, 16 distinct) are submitted over HTTP, then the worker consumes again and drains them. Its
time is the database's: from the first job's claim (started_at) to the last one's success
(finished_at); the machine's CPU time meanwhile (every process) is shown per job, with the share of
the cores it kept busy. Then the model alone, in this process, upscales the same images one after the other
(`Upscaler.upscale` as the worker builds it: same weights, tile and threads; decoding not counted).

ratio = model time / drain time (1.0 = the service drains as fast as its model computes). Last, the
worker's own stage times (read, decode, model, encode, store, record: mean ms per job from its
/metrics, `portraits_worker_stage_seconds` and `portraits_model_seconds`); its threads overlap them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (cpu_by_process, face_images, header, machine_cpu_seconds, median, model_alone,  # noqa: E402
                           profiled_worker, running_service, stage_means, time_model)

QUEUE = "celery"


def consuming(app, on: bool) -> None:
    """Tell the worker to stop or resume consuming; waits for its answer (one worker in the stack)."""
    if on:
        replies = app.control.add_consumer(QUEUE, reply=True, timeout=10, limit=1)
    else:
        replies = app.control.cancel_consumer(QUEUE, reply=True, timeout=10, limit=1)
    if not replies:
        raise RuntimeError(f"no worker answered {'add' if on else 'cancel'}_consumer")


def drain(service, app, images: list[bytes], jobs: int) -> dict:
    from sqlalchemy import func, select

    from shared.models import Job, JobStatus

    consuming(app, False)
    ids = []
    for i in range(jobs):
        response = service.client.submit(images[i % len(images)])
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
        ids.append(response.json()["id"])
    cpu_before, roles_before, started = machine_cpu_seconds(), cpu_by_process(), time.monotonic()
    stages_before = service.worker_stages()
    consuming(app, True)
    deadline = time.monotonic() + 60 + jobs * 2
    while time.monotonic() < deadline:
        with service.sessions() as s:
            open_jobs = s.scalar(select(func.count()).select_from(Job).where(
                Job.id.in_(ids), Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])))
        if not open_jobs:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"{open_jobs} of {jobs} jobs still open after the deadline")
    with service.sessions() as s:
        first, last, ok = s.execute(select(func.min(Job.started_at), func.max(Job.finished_at),
                                           func.count().filter(Job.status == JobStatus.SUCCEEDED))
                                    .where(Job.id.in_(ids))).one()
    if ok != jobs:
        raise RuntimeError(f"only {ok} of {jobs} jobs succeeded")
    cpu, roles = machine_cpu_seconds() - cpu_before, cpu_by_process()
    by_role = {r: (roles[r] - roles_before.get(r, 0.0)) / jobs * 1000 for r in roles}
    return {"drain": (last - first).total_seconds(), "cpu_ms": cpu / jobs * 1000, "by_role": by_role,
            "busy": cpu / (time.monotonic() - started) / os.cpu_count(),
            "stages": stage_means(stages_before, service.worker_stages())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="input edge in px (default 128)")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy the worker during the drains into this file")
    parser.add_argument("--gil", action="store_true", help="--profile only the thread holding the GIL")
    parser.add_argument("--worker-threads", type=int, default=2,
                        help="TORCH_THREADS of the worker (default 2); the model alone always runs on 2")
    args = parser.parse_args(argv)

    from shared.queue import make_celery

    images = face_images(16, args.size)
    with running_service(torch_threads=args.worker_threads) as service:
        app = make_celery(service.settings)
        upscaler = model_alone(service.settings.model_copy(update={"torch_threads": 2}))
        print(header(upscaler))
        print(f"service: Procfile under honcho (gunicorn 2x4 gthread, solo worker, TORCH_THREADS="
              f"{service.settings.torch_threads}); {args.jobs} queued {args.size}² JPEG faces x {args.rounds} "
              "rounds\n")
        drain(service, app, images, 4)  # warm-up: the worker loads the model
        for data in images:
            time_model(upscaler, data)
        print("| round | drain s | ms per job | model alone s | model ms per job | **ratio** | machine CPU ms per job "
              "| CPUs busy |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        ratios, by_role, stages = [], [], []
        for r in range(args.rounds):
            with profiled_worker(service, args.profile and args.profile.with_suffix(f".{r + 1}.raw"), args.gil):
                got = drain(service, app, images, args.jobs)
            model = sum(time_model(upscaler, images[i % len(images)]) for i in range(args.jobs))
            ratios.append(model / got["drain"])
            by_role.append(got["by_role"])
            stages.append(got["stages"])
            print(f"| {r + 1} | {got['drain']:.2f} | {got['drain'] / args.jobs * 1000:.1f} | {model:.2f} | "
                  f"{model / args.jobs * 1000:.1f} | **{ratios[-1]:.2f}** | {got['cpu_ms']:.1f} | {got['busy']:.0%} |",
                  flush=True)
        print(f"\nmedian ratio over {args.rounds} rounds: **{median(ratios):.2f}** of model speed")
        roles = sorted({r for got in by_role for r in got}, key=lambda r: -median([g.get(r, 0) for g in by_role]))
        print("\nCPU ms per job by process (median over rounds): " + ", ".join(
            f"{r} {median([g.get(r, 0) for g in by_role]):.1f}" for r in roles))
        # Wall time of each stage, in threads that overlap: they add up to more than a job's share.
        print("\nThe worker's stages, mean ms per job (its /metrics, median over rounds; stages of different "
              "jobs overlap): " + ", ".join(f"{stage} {median([g[stage] for g in stages if stage in g]):.1f}"
                                            for stage in stages[-1]))
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
