"""The whole service for the service benchmarks (bench/job_overhead.py, bench/drain.py), started as
`make run` starts it: honcho runs the repository's Procfile unchanged (gunicorn 2x4 gthread API, one
solo Celery worker, sweeper, webhook deliverer) against a database, a Redis server and an S3 bucket
of its own, and the bench talks to it over HTTP. Beside it, in the bench's own process, the model as
the worker builds it (`worker.runtime.Runtime(settings).upscaler`: same weights, tile, threads), so
"the model alone on the same images" is measured in the same run.

Postgres: the server named by DATABASE_URL (default the machine's 127.0.0.1:5432), a fresh database
migrated to head and dropped at the end. Redis: a private redis-server on a free port (none: an index of
REDIS_URL's server leased like the tests do). S3: a `weed mini` of its own.
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("PORTRAIT_DATA_DIR", ROOT.parent / "shared" / "data"))
VAL_FACES = DATA / "faces" / "val"


@dataclass
class Service:
    stack: object  # tests.system.stack.Stack
    settings: object  # shared.settings.Settings the processes run with
    client: object  # tests.system.stack.Client with a partner key
    sessions: object  # SQLAlchemy sessionmaker on the stack's database (read-only use: timestamps)
    redis_url: str

    def worker_stages(self) -> dict[str, tuple[float, int]]:
        """The worker's seconds and runs so far in each stage, from its own /metrics (see
        `read_worker_stages`)."""
        import requests

        return read_worker_stages(requests.get(self.stack.metrics_url("worker"), timeout=10).text)

    def worker_pid(self) -> int:
        """The Celery worker's pid (the solo pool runs tasks in it): the process under honcho running
        `celery -A worker.app worker` (not the shell around it, nor its decoder forkserver)."""
        from tests.api_process import descendants

        found = []
        for pid in descendants(self.stack.proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # exited between the listing and the read
            if cmd[0] != b"/bin/sh" and b"worker.app" in cmd and any(c.endswith(b"celery") for c in cmd[:2]):
                found.append(pid)
        if not found:
            raise RuntimeError("no Celery worker process in the stack")
        return min(found)


@contextlib.contextmanager
def running_service(**overrides):
    """Start the service (see the module docstring); yield a `Service`; stop and clean up after."""
    from devstack.ports import free_port
    from devstack.s3 import start_weed
    from shared.accounts import PARTNER, create_key, create_partner
    from shared.db import make_engine, make_session_factory
    from shared.settings import Settings
    from shared.storage import Storage
    from tests.chaos.harness import PrivateRedis, redis_binary
    from tests.database import drop_database, fresh_database
    from tests.system.conftest import stack_port
    from tests.system.stack import Client, Stack

    work = Path(tempfile.mkdtemp(prefix="service-bench-"))
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    db_name = f"portraits_service_bench_{os.getpid()}"
    s3 = start_weed(work / "s3", port=free_port(), access_key="bench", secret_key="bench-secret-key",
                    bucket="service-bench")
    redis = PrivateRedis(free_port(), work / "redis").start() if redis_binary() else None
    stack = engine = None
    try:
        with contextlib.ExitStack() as leases:
            if redis is None:
                from tests.conftest import leased_redis_db

                redis_url = leases.enter_context(leased_redis_db())
            else:
                redis_url = redis.url
            values = dict(database_url=fresh_database(base, db_name), redis_url=redis_url, s3_endpoint=s3.endpoint,
                          s3_access_key="bench", s3_secret_key="bench-secret-key", s3_bucket="service-bench",
                          model_device="cpu", torch_threads=2, rate_limit_submit="1000000/minute",
                          rate_limit_default="1000000/minute")
            settings = Settings(**{**values, **overrides})
            Storage(settings).ensure_bucket()
            engine = make_engine(settings.database_url)
            sessions = make_session_factory(engine)
            with sessions() as session, session.begin():
                _, key = create_key(session, role=PARTNER, name="bench",
                                    partner=create_partner(session, "Bench Memorials"))
            env = {k.upper(): str(v).lower() if isinstance(v, bool) else str(v)
                   for k, v in settings.model_dump().items() if v is not None}
            stack = Stack(work / "stack", env, stack_port(), procfile=(ROOT / "Procfile").read_text()).start()
            yield Service(stack, settings, Client(stack.url, key), sessions, redis_url)
    finally:
        if stack is not None:
            stack.stop()
            (work / "stack" / "honcho.log").replace(work.parent / f"{work.name}-honcho.log")
        if engine is not None:
            engine.dispose()
        if redis is not None:
            redis.kill()
        s3.stop()
        with contextlib.suppress(Exception):
            drop_database(base, db_name)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def profiled_worker(service: Service, out: Path | None, gil: bool = False):
    """py-spy samples the live worker (every thread, 1000/s) while the block runs; `out` gets the raw
    collapsed stacks (flamegraph.pl's input). `gil`: only the thread holding the GIL (where the
    worker's Python time goes). Nothing when `out` is None."""
    if out is None:
        yield
        return
    import signal
    import subprocess

    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(service.worker_pid()),
                            "--rate", "1000", "--format", "raw", "--threads", "--nonblocking",
                            *(["--gil"] if gil else []), "--output", str(out)])
    time.sleep(1)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


# ------------------------------------------------------------------------------------------- images
def face_images(count: int, size: int, quality: int = 92) -> list[bytes]:
    """`count` val faces (or drawn ones without the data), resized to size² (Lanczos), as JPEG: what
    a family uploads."""
    paths = sorted(VAL_FACES.glob("*.jpg"))[:count] if VAL_FACES.is_dir() else []
    images = []
    for i in range(count):
        if paths:
            im = Image.open(paths[i % len(paths)]).convert("RGB").resize((size, size), Image.LANCZOS)
        else:
            from tests.imagegen import synthetic_portrait

            im = Image.fromarray(synthetic_portrait(size, seed=i))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        images.append(buf.getvalue())
    return images


def model_alone(settings):
    """The model exactly as the worker builds it (weights, device, tile, threads)."""
    from worker.runtime import Runtime

    return Runtime(settings).upscaler


def time_model(upscaler, data: bytes) -> float:
    """Seconds of `upscaler.upscale` on the decoded image (decode not counted)."""
    from model.images import decode_image

    pixels = decode_image(data)
    started = time.perf_counter()
    upscaler.upscale(pixels)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ reports
def header(upscaler) -> str:
    from bench.speed import cpu_header, versions

    return (f"{cpu_header()}\n{versions()}; Python {platform.python_version()}\n"
            f"model: {upscaler.name} {upscaler.version}, {upscaler.backend} {upscaler.precision}, "
            f"{upscaler.threads} threads, tile {upscaler.tile}; load average {os.getloadavg()[0]:.2f}")


def machine_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (all processes: the stack, its servers, this bench)."""
    from bench.load_stack import machine_busy
    from tests.api_process import CLOCK_TICKS

    return machine_busy()[0] / CLOCK_TICKS


# What each process is, from its command line (first match wins): the stack's roles and its servers.
ROLES = [("postgres", "postgres"), ("redis-server", "redis"), ("weed", "s3"), ("gunicorn", "api"),
         ("worker.sweeper", "sweeper"), ("worker.webhooks", "webhooks"), ("celery", "worker"),
         ("multiprocessing", "decoder"), ("honcho", "honcho")]


def cpu_by_process() -> dict[str, float]:
    """CPU seconds (user + system) each role has used so far, summed over its live processes and the
    children they reaped; this bench's own process is "bench", anything unrecognised "other". Diff two
    calls for a window. A process that exited meanwhile counts through its parent, once reaped: the
    worker's decoder, replaced every 200 images, through the forkserver (also a "decoder") that
    started it; one not yet reaped, or reaped by a parent of another role, is missing or misplaced."""
    from tests.api_process import process_cpu_seconds

    me, out = os.getpid(), {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            seconds = process_cpu_seconds(int(entry.name), reaped=True)
        except OSError:
            continue  # exited meanwhile
        role = "bench" if int(entry.name) == me else next((r for m, r in ROLES if m in cmd), "other")
        out[role] = out.get(role, 0.0) + seconds
    return out


def stage_order() -> tuple[str, ...]:
    """The worker's stages as a job goes through them: read and decode, the model, then the rest."""
    from shared.metrics import WORKER_STAGES

    return (*WORKER_STAGES[:2], "model", *WORKER_STAGES[2:])


def read_worker_stages(text: str) -> dict[str, tuple[float, int]]:
    """stage → (seconds, runs) from a worker's Prometheus text: each `portraits_worker_stage_seconds`
    stage, and "model" (`portraits_model_seconds`, all its series summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("portraits_worker_stage_seconds", "portraits_model_seconds"):
            continue
        for sample in family.samples:
            kind = sample.name.rsplit("_", 1)[1]
            if kind in ("sum", "count"):
                got = out.setdefault(sample.labels.get("stage", "model"), [0.0, 0])
                got[kind == "count"] += sample.value
    return {stage: (seconds, int(runs)) for stage, (seconds, runs) in out.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per run of each stage between two `read_worker_stages` readings, in the order a job
    goes (stages that did not run in between are left out)."""
    order, means = stage_order(), {}
    for stage in sorted(after, key=lambda s: order.index(s) if s in order else len(order)):
        seconds, runs = after[stage]
        seconds0, runs0 = before.get(stage, (0.0, 0))
        if runs > runs0:
            means[stage] = (seconds - seconds0) / (runs - runs0) * 1000
    return means


def pct(values, q: float) -> float:
    """The q-quantile (0-1) of `values`, linear between ranks (numpy's default)."""
    return float(np.quantile(np.asarray(values, dtype=float), q))


def median(values) -> float:
    return statistics.median(values)
