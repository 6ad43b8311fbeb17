"""Chaos harness shared by tests/chaos and bench/chaos.py: a private Redis that can be restarted
(it keeps nothing on disk, so a restart loses every queued message), the sweeper process, and a fleet
of worker processes restarted when they die, like compose's `restart: always`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis as redis_lib

from tests.processes import ROOT, WorkerProcess, service_env


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from devstack.redis import server_binary

        return server_binary()
    except FileNotFoundError:
        return None


class PrivateRedis:
    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if redis_lib.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return self
            except redis_lib.RedisError:
                time.sleep(0.1)
        raise TimeoutError("private redis did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


class Sweeper:
    def __init__(self, settings, log_path: Path):
        self.settings, self.log_path = settings, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sweeper":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.sweeper"], cwd=ROOT,
                                         env=service_env(self.settings), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)


class Fleet:
    """N worker processes; a watchdog thread restarts any that died."""

    def __init__(self, settings, logdir: Path, size: int = 2, worker_cls=WorkerProcess):
        self.workers = [worker_cls(settings, logdir / f"worker{i}.log", name=f"chaos{i}") for i in range(size)]
        self.kills = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> "Fleet":
        for w in self.workers:
            w.start()
        self._watchdog.start()
        return self

    def pids(self) -> dict[int, WorkerProcess]:
        return {w.proc.pid: w for w in self.workers if w.proc and w.proc.poll() is None}

    def kill9(self, pid: int) -> None:
        os.killpg(pid, signal.SIGKILL)
        self.kills += 1

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            for w in self.workers:
                if w.proc and w.proc.poll() is not None and not self._stop.is_set():
                    self.restarts += 1
                    try:
                        w.start()
                    except Exception:  # retried on the next tick
                        pass

    def stop(self) -> None:
        self._stop.set()
        self._watchdog.join(5)
        for w in self.workers:
            w.stop()


def logs(paths) -> str:
    return "\n".join(f"--- {p}\n{Path(p).read_text(errors='replace')[-3000:]}" for p in paths if Path(p).exists())


def partner_client(app, name: str = "chaos"):
    """A test client authenticated as partner `name` (created if missing)."""
    from sqlalchemy import select

    from shared.accounts import PARTNER, Partner, create_key, create_partner

    with app.extensions["portraits"].sessions() as session, session.begin():
        partner = session.scalar(select(Partner).where(Partner.name == name)) or create_partner(session, name)
        _, key = create_key(session, role=PARTNER, name=f"{name}-key", partner=partner)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def kill_scenario(app, storage, settings, redis_server, workdir: Path, *, jobs: int, kills: int,
                  image_size: int, redis_restart_after_kill: int | None = 1, workers: int = 2,
                  timeout: float = 300, progress=None) -> dict:
    """Submit `jobs` portraits, kill -9 a worker mid-task `kills` times (restarting Redis once), wait
    for every job to end; return what happened: lost, duplicated, recovery times."""
    import statistics
    import uuid
    from collections import Counter

    from sqlalchemy import func, select

    from shared.models import Job, JobEvent, JobStatus
    from tests.imagegen import encode, post_image, synthetic_portrait

    sessions = app.extensions["portraits"].sessions
    client = partner_client(app)
    sweeper = Sweeper(settings, workdir / "sweeper.log").start()
    fleet = Fleet(settings, workdir, size=workers).start()
    ids: list[uuid.UUID] = []
    kill_log: list[tuple[float, uuid.UUID, int]] = []  # (time, job interrupted, its attempt)
    redis_restarted_at = None
    started = time.time()
    try:
        images = [encode(synthetic_portrait(image_size, seed=i % 16)) for i in range(min(jobs, 16))]
        for i in range(jobs):
            response = post_image(client, images[i % len(images)])
            assert response.status_code == 202, response.get_json()
            ids.append(uuid.UUID(response.get_json()["id"]))
        for k in range(kills):
            deadline = time.monotonic() + 60
            victim = None
            while victim is None and time.monotonic() < deadline:
                pids = fleet.pids()
                with sessions() as s:
                    for job_id, attempt, worker in s.execute(select(Job.id, Job.attempts, Job.worker).where(
                            Job.status == JobStatus.RUNNING)).all():
                        pid = int(worker.rsplit(":", 1)[1]) if worker and ":" in worker else None
                        if pid in pids:
                            victim = (pid, job_id, attempt)
                            break
                time.sleep(0.02)
            if victim is None:
                break
            fleet.kill9(victim[0])
            kill_log.append((time.time(), victim[1], victim[2]))
            if redis_restart_after_kill is not None and k == redis_restart_after_kill:
                redis_server.restart()
                redis_restarted_at = time.time()
            time.sleep(1.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sessions() as s:
                open_jobs = s.scalar(select(func.count()).select_from(Job).where(
                    Job.id.in_(ids), Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])))
            if progress:
                progress(len(ids) - open_jobs, len(ids))
            if not open_jobs:
                break
            time.sleep(0.5)
    finally:
        fleet.stop()
        sweeper.stop()
    elapsed = time.time() - started
    with sessions() as s:
        final = Counter(st.value for st in s.scalars(select(Job.status).where(Job.id.in_(ids))))
        successes = Counter(dict(s.execute(select(JobEvent.job_id, func.count()).where(
            JobEvent.job_id.in_(ids), JobEvent.to_status == JobStatus.SUCCEEDED).group_by(JobEvent.job_id)).all()))
        finished = dict(s.execute(select(Job.id, Job.finished_at).where(Job.id.in_(ids))).all())
        max_attempts = s.scalar(select(func.max(Job.attempts)).where(Job.id.in_(ids)))
    objects = Counter()
    for obj in storage.client.list_objects(storage.bucket, prefix="partners/", recursive=True):
        job_id = obj.object_name.split("/")[3]  # partners/<partner>/jobs/<job>/<name>
        objects[job_id] += obj.object_name.endswith("result.png")
    recovery = [finished[j].timestamp() - t for t, j, _ in kill_log if finished.get(j)]
    return {
        "jobs": len(ids), "kills": len(kill_log), "worker_restarts": fleet.restarts,
        "redis_restarted": redis_restarted_at is not None,
        "succeeded": final.get("succeeded", 0), "failed": final.get("failed", 0),
        "lost": len(ids) - sum(final.get(s, 0) for s in ("succeeded", "failed", "cancelled")),
        "finished_twice": sum(1 for n in successes.values() if n > 1),
        "result_objects_not_one": sum(1 for j in ids if objects.get(str(j), 0) != 1),
        "max_attempts": max_attempts,
        "recovery_s_median": round(statistics.median(recovery), 2) if recovery else None,
        "recovery_s_max": round(max(recovery), 2) if recovery else None,
        "elapsed_s": round(elapsed, 1),
        "logs": [*(w.log_path for w in fleet.workers), sweeper.log_path],
    }
