"""Latency of `GET /v1/jobs/<id>` under a fixed request rate, against the API as the Procfile runs it.

    make bench BENCH_ARGS="poll_load"                      # or, with the services' settings in the env:
    python bench/poll_load.py --rates 200,300,500 --seconds 15 --repeat 3
    python bench/poll_load.py --baseline /tmp/poll-base    # and older checkouts, interleaved, same run
    python bench/poll_load.py --api-command "gunicorn ... -w 2 --threads 2 -k gthread ..."  # another model

What runs: the Procfile's `api:` line (gunicorn) under honcho, as `make run` and tests/system start it,
with its own database (100,000 seeded job rows of one partner), Redis index and bucket; the
settings are the defaults (rate limits, KEY_CACHE_SECONDS). The partner polls through --keys keys
(100: 5 requests/s each at 500/s, inside the default 600/minute), so the rate limiter counts and
checks every request as in production. The load comes from bench/loadgen.py, an open-loop
generator (latency from when a request was due, so queueing behind an overloaded server counts), in
its own process; it shares the 2 cores with the API, Postgres and Redis, so its CPU is reported.

For each repeat, each rate runs once per stack (interleaved when --baseline is given), then POSTs
at --post-rate. Printed per stack and rate: medians over the repeats of p50, p99 and max latency,
each repeat's p99 (their spread is wide on a busy 2-core machine), in how many of the schedule's
100-ms stretches each repeat's slowest 1 % of requests were due (a few: short stalls in which every
request waited, e.g. the host taking the CPU; many: queueing spread over the run), the errors
(failed connections, timeouts, any status but the expected one) summed over all repeats, API CPU ms
per request (the gunicorn processes' CPU time / requests), the generator's CPU in % of one core, and
how busy the whole machine was. `--profile FILE`: py-spy's samples of this checkout's API during the first
repeat's last rate. docs/benchmarks.md has the figures.

`--baseline DIR` (repeatable): another checkout (e.g. `git archive <commit> | tar -x -C /tmp/poll-base`)
whose API runs beside this one, named by its folder, with the same database and this venv (so it
must run with today's schema and packages); each stack has its own Redis index.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.load_stack import ApiStack, machine_busy, seed  # noqa: E402
from bench.loadgen import TAIL_WINDOW_S, percentile, tail_windows  # noqa: E402
from bench.speed import cpu_header  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.conftest import leased_redis_db  # noqa: E402
from tests.database import drop_database, fresh_database  # noqa: E402

DB_NAME = "portraits_poll_load"


def drive(stack: ApiStack, plan: Path, rate: float, seconds: float, warmup: float, expect: int) -> dict:
    """One phase of bench/loadgen.py against `stack`; its numbers and the API's CPU during it."""
    api0, busy0 = stack.cpu_seconds(), machine_busy()
    out = subprocess.run([sys.executable, str(REPO / "bench" / "loadgen.py"), "--port", str(stack.port),
                          "--plan", str(plan), "--rate", str(rate), "--seconds", str(seconds),
                          "--warmup", str(warmup)], capture_output=True, text=True, check=True).stdout
    api1, busy1 = stack.cpu_seconds(), machine_busy()
    result = json.loads(out)
    lat = result.pop("latencies_ms")
    wrong = sum(n for status, n in result["statuses"].items() if int(status) != expect)
    wall = result["wall_seconds"]
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat, default=float("nan")),
            "tail_windows": tail_windows(result.pop("due_s"), lat), "windows": round(seconds / TAIL_WINDOW_S),
            "errors": sum(result["errors"].values()) + wrong,
            "detail": {**result["statuses"], **result["errors"]},
            "api_cpu_ms": (api1 - api0) / (rate * (seconds + warmup)) * 1000,  # warm-up's requests too
            "gen_cpu_pct": result["cpu_seconds"] / wall * 100,
            "busy_pct": (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * 100}


def start_profiler(stack: ApiStack, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy on gunicorn and its workers for `seconds`: threads holding the GIL (CPU in Python), sampled
    without pausing them (pip install -e '.[bench]')."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        sys.exit(f"--profile needs py-spy: {spy} is absent (pip install -e '.[bench]')")
    return subprocess.Popen([str(spy), "record", "--pid", str(stack.gunicorn_pid()),
                             "--subprocesses", "--nonblocking", "--gil", "--rate", "200", "--format", "raw",
                             "--duration", str(int(seconds)), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(title: str, rows: dict[tuple[str, str], list[dict]]) -> None:
    print(f"\n{title}\n")
    print("| API | load | p50 ms | p99 ms | p99 of each repeat | slowest 1 % due in (100-ms windows) "
          "| max ms | errors | API CPU ms/req | generator CPU % | machine busy % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, load), runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "max", "api_cpu_ms",
                                                                   "gen_cpu_pct", "busy_pct")}
        errors = sum(r["errors"] for r in runs)
        each = ", ".join(f"{r['p99']:.1f}" for r in runs)
        windows = ", ".join(str(r["tail_windows"]) for r in runs) + f" of {runs[0]['windows']}"
        print(f"| {name} | {load} | {med['p50']:.1f} | {med['p99']:.1f} | {each} | {windows} | "
              f"{med['max']:.0f} | {errors} | {med['api_cpu_ms']:.2f} | {med['gen_cpu_pct']:.0f} | "
              f"{med['busy_pct']:.0f} |")
        if errors:
            print(f"|  | ↳ {[r['detail'] for r in runs if r['errors']]} | | | | | | | | | |")


def run_phases(stacks: dict[str, ApiStack], plans: dict, args) -> tuple[dict, dict]:
    """Each repeat: every GET rate on every stack in turn, then the POSTs; the runs by (stack, load)."""
    rates = [float(r) for r in args.rates.split(",")]
    gets: dict = {}
    posts: dict = {}
    for repeat in range(args.repeat):
        for rate in rates:
            for name, api in stacks.items():
                profiled = args.profile and name == "this" and repeat == 0 and rate == rates[-1]
                profiler = start_profiler(api, args.profile, args.seconds + args.warmup) if profiled else None
                gets.setdefault((name, f"GET {rate:g}/s"), []).append(
                    drive(api, plans["get"], rate, args.seconds, args.warmup, 200))
                if profiler is not None:
                    profiler.wait()
                    print(f"py-spy: {args.profile}")
        for name, api in stacks.items():
            if args.post_rate:
                posts.setdefault((name, f"POST {args.post_rate:g}/s"), []).append(
                    drive(api, plans["post"], args.post_rate, args.post_seconds, 2, 202))
    return gets, posts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="200,300,500", help="GET requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3, help="seconds per phase before measuring")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000, help="job rows seeded")
    parser.add_argument("--keys", type=int, default=100, help="API keys the partner polls with")
    parser.add_argument("--post-rate", type=float, default=20, help="POST /v1/jobs per second (0: none)")
    parser.add_argument("--post-seconds", type=float, default=10)
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout to run beside this one (repeatable; named by its folder)")
    parser.add_argument("--profile", type=Path, help="py-spy's samples of the API during the first repeat's "
                        "last rate (folded stacks, for flamegraph tools)")
    parser.add_argument("--api-command", help="instead of the Procfile's api line (same placeholders)")
    args = parser.parse_args(argv)
    settings = Settings()
    base_url = os.environ.get("DATABASE_URL", settings.database_url)
    print(cpu_header())
    print(f"load {os.getloadavg()[0]:.2f} at the start; {args.rows:,} job rows, {args.keys} keys; "
          f"{args.repeat} repeats of {args.warmup:g} s warm-up + {args.seconds:g} s per phase")
    database_url = fresh_database(base_url, DB_NAME)
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="poll-load-") as tmp:
            folder = Path(tmp)
            started = time.perf_counter()
            plans = seed(database_url, folder, args.rows, args.keys)
            print(f"seeded in {time.perf_counter() - started:.1f} s")
            checkouts = {"this": REPO, **{path.resolve().name: path.resolve() for path in args.baseline}}
            stacks = {}
            for name, checkout in checkouts.items():
                redis_url = stack.enter_context(leased_redis_db())
                values = settings.model_copy(update=dict(database_url=database_url, redis_url=redis_url,
                                                         s3_bucket="portraits-bench-load"))
                stacks[name] = stack.enter_context(ApiStack(checkout, folder / name, values,
                                                            api_command=args.api_command).run())
                print(f"{name}: {stacks[name].command} ({checkout})")
            for name, api in stacks.items():
                api.preflight(plans)  # own job 200, another partner's 404, and warm every key's cache
            gets, posts = run_phases(stacks, plans, args)
            report("GET /v1/jobs/<id> (medians over the repeats; errors summed)", gets)
            if posts:
                report(f"POST /v1/jobs, a {plans['image_bytes']:,}-byte PNG (medians over the repeats; "
                       "errors summed)", posts)
    finally:
        drop_database(base_url, DB_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
