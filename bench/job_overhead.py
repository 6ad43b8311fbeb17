"""Job overhead: how much longer a job takes through the service than the model alone on its image.

    python bench/job_overhead.py                       # 512² faces, 4 rounds of 8 jobs, poll every 10 ms
    python bench/job_overhead.py --size 128 --rounds 3 --jobs 10 --poll-ms 5
    python bench/job_overhead.py --wait 20             # long polls (GET ?wait=20) instead of polling

Starts the real processes (bench/service.py: the Procfile under honcho, its own database, Redis and
bucket), then, round after round, for each of `--jobs` val faces resized to size² (JPEG q92): POST
/v1/jobs, poll GET /v1/jobs/<id> every `--poll-ms` until it is `succeeded` (that wall time is the
job's), then run the model alone, in this process, on the same decoded image (`Upscaler.upscale` as
the worker builds it: same weights, tile and threads). Jobs run one at a time, with the stack
otherwise idle; the in-process model runs while the stack is idle too.

overhead = job time / median model time − 1, per job; the table gives its p50 and p95 per round and
over all rounds, and where the time went from the job's own timestamps (created_at, started_at,
finished_at are the database's clock at the start of each transaction): POST (the client's round
trip), queue (created → claimed: the POST's commit and publish, the message's way to the worker),
worker (claimed → the success transaction), poll lag (→ the poll that saw it). Three warm-up jobs (the
first loads the model in the worker) are not counted. Then each process's CPU time per job, and the
worker's own stage times (mean ms per job from its /metrics: read and decode, before the claim; the
model; encode, store and record, after it).
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (cpu_by_process, face_images, header, median, model_alone, pct,  # noqa: E402
                           profiled_worker, running_service, stage_means, time_model)


def run_job(client, data: bytes, poll_s: float, wait_s: float = 0) -> dict:
    """Submit, poll until terminal (every `poll_s`, or long polls of `wait_s`); the client's timings and
    the job's own timestamps."""
    started = time.perf_counter()
    response = client.submit(data)
    posted = time.perf_counter()
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
    job = response.json()
    while job["status"] in ("queued", "running"):
        if wait_s:
            job = client.get(f"/v1/jobs/{job['id']}?wait={wait_s:g}").json()
            continue
        time.sleep(poll_s)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    seen, seen_wall = time.perf_counter(), time.time()  # the database's clock is this machine's
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error_code')}: {job.get('error')}")
    stamp = {k: datetime.fromisoformat(job[k]).timestamp() for k in ("created_at", "started_at", "finished_at")}
    total = seen - started
    return {"total": total, "post": posted - started, "queue": stamp["started_at"] - stamp["created_at"],
            "worker": stamp["finished_at"] - stamp["started_at"], "lag": seen_wall - stamp["finished_at"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="input edge in px (default 512)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs per round (distinct faces)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--poll-ms", type=float, default=10.0, help="pause between polls (default 10)")
    parser.add_argument("--wait", type=float, default=0,
                        help="long polls (GET ?wait=N) instead of polling every --poll-ms (default: off)")
    parser.add_argument("--profile", type=Path, help="py-spy the worker during the rounds into this file")
    args = parser.parse_args(argv)

    images = face_images(args.jobs, args.size)
    with running_service() as service:
        upscaler = model_alone(service.settings)
        print(header(upscaler))
        print(f"service: Procfile under honcho (gunicorn 2x4 gthread, solo worker, TORCH_THREADS="
              f"{service.settings.torch_threads}); {args.size}² JPEG faces, {args.jobs} jobs x {args.rounds} rounds, "
              f"one at a time, " + (f"long polls of {args.wait:g} s\n" if args.wait else f"poll every {args.poll_ms:g} ms\n"))
        poll_s = args.poll_ms / 1000
        for data in images[:3]:  # warm-up: the worker loads the model, both runtimes settle
            run_job(service.client, data, poll_s, args.wait)
            time_model(upscaler, data)
        rows, all_jobs, all_model, cpu, model_cpu = [], [], [], {}, 0.0
        stages_before = service.worker_stages()
        with profiled_worker(service, args.profile):
            for r in range(args.rounds):
                jobs, model = [], []
                for data in images:  # interleaved: a job through the service, then the model alone on it
                    before = cpu_by_process()
                    jobs.append(run_job(service.client, data, poll_s, args.wait))
                    for role, seconds in cpu_by_process().items():
                        cpu[role] = cpu.get(role, 0.0) + seconds - before.get(role, 0.0)
                    started = time.process_time()
                    model.append(time_model(upscaler, data))
                    model_cpu += time.process_time() - started
                all_jobs += jobs
                all_model += model
                rows.append((f"round {r + 1}", jobs, model))
        stages = stage_means(stages_before, service.worker_stages())
        rows.append(("all rounds", all_jobs, all_model))

        print("| | model alone ms (median) | job ms p50 | job ms p95 | **overhead p50** | **overhead p95** "
              "| POST ms | queue ms | worker ms | worker − model ms | poll lag ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, jobs, model in rows:
            m = median(model)
            over = [j["total"] / m - 1 for j in jobs]
            col = {k: median([j[k] for j in jobs]) * 1000 for k in ("post", "queue", "worker", "lag")}
            print(f"| {name} | {m * 1000:.1f} | {pct([j['total'] for j in jobs], .5) * 1000:.1f} | "
                  f"{pct([j['total'] for j in jobs], .95) * 1000:.1f} | **{pct(over, .5):.0%}** | "
                  f"**{pct(over, .95):.0%}** | {col['post']:.1f} | {col['queue']:.1f} | {col['worker']:.1f} | "
                  f"{col['worker'] - m * 1000:.1f} | {col['lag']:.1f} |")
        # The machine's CPU budget: a job cannot take less wall time than its CPU time / the cores.
        per_job = {role: seconds / len(all_jobs) * 1000 for role, seconds in cpu.items()}
        print(f"\nCPU ms per job through the service, by process (all rounds; bench = this client): "
              + ", ".join(f"{r} {v:.1f}" for r, v in sorted(per_job.items(), key=lambda kv: -kv[1]) if v >= 0.05)
              + f"; total {sum(per_job.values()):.0f}, against {model_cpu / len(all_jobs) * 1000:.0f} "
              f"for the model alone (decode included)")
        print("\nThe worker's stages, mean ms per job (its /metrics; the model in the service, not alone): "
              + ", ".join(f"{stage} {ms:.1f}" for stage, ms in stages.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
