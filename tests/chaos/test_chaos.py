"""Kill things and prove no job is lost or finished twice (real Postgres, Redis, S3, processes).

Each test is bounded in time; a failure prints the worker and sweeper logs.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import func, select

from shared.models import Job, JobEvent, JobStatus
from shared.queue import publish_upscale
from tests.chaos.harness import Fleet, kill_scenario, logs, partner_client
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.processes import WorkerProcess

pytestmark = pytest.mark.chaos
TERMINAL = {"succeeded", "failed", "cancelled"}


def submit(client, data: bytes) -> str:
    response = post_image(client, data)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def statuses(sessions, ids) -> dict[str, str]:
    with sessions() as s:
        rows = s.execute(select(Job.id, Job.status).where(Job.id.in_([uuid.UUID(i) for i in ids]))).all()
    return {str(i): st.value for i, st in rows}


def wait_terminal(sessions, ids, timeout: float, on_fail) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = statuses(sessions, ids)
        if all(v in TERMINAL for v in now.values()):
            return now
        time.sleep(0.5)
    pytest.fail(f"not all jobs finished in {timeout}s: {Counter(now.values())}\n{on_fail()}")


def success_events(sessions, ids) -> Counter:
    with sessions() as s:
        rows = s.execute(select(JobEvent.job_id, func.count()).where(
            JobEvent.job_id.in_([uuid.UUID(i) for i in ids]), JobEvent.to_status == JobStatus.SUCCEEDED)
            .group_by(JobEvent.job_id)).all()
    return Counter({str(j): n for j, n in rows})


def objects_per_job(storage, ids) -> dict[str, list[str]]:
    """Object names (after partners/<partner>/) of each job."""
    found: dict[str, list[str]] = {i: [] for i in ids}
    for o in storage.client.list_objects(storage.bucket, prefix="partners/", recursive=True):
        _, _, rest = o.object_name.partition("/")
        _, _, rest = rest.partition("/")  # jobs/<id>/<name>
        job_id = rest.split("/")[1]
        if job_id in found:
            found[job_id].append(rest)
    return {i: sorted(v) for i, v in found.items()}


def running_on(sessions, pids: dict) -> int | None:
    """pid of a live worker that is mid-task right now, if any."""
    with sessions() as s:
        workers = s.scalars(select(Job.worker).where(Job.status == JobStatus.RUNNING)).all()
    for w in workers:
        pid = int(w.rsplit(":", 1)[1]) if w and ":" in w else None
        if pid in pids:
            return pid
    return None


def test_kill_workers_and_restart_redis_loses_nothing(chaos_settings, make_app, storage, private_redis,
                                                      tmp_path):
    app = make_app(**chaos_settings.model_dump(include={"redis_url", "max_attempts"}))
    # 320-px inputs take ~0.3–1 s on this CPU, so each kill lands mid-task.
    report = kill_scenario(app, storage, chaos_settings, private_redis, tmp_path, jobs=40, kills=4,
                           image_size=320, redis_restart_after_kill=1)
    diag = logs(report.pop("logs"))
    assert report["kills"] == 4 and report["redis_restarted"], (report, diag)
    assert report["succeeded"] == 40 and report["lost"] == 0, (report, diag)
    assert report["finished_twice"] == 0 and report["result_objects_not_one"] == 0, report
    assert report["max_attempts"] >= 2, report  # the kills really interrupted jobs


def test_crash_between_commit_and_publish_is_recovered_by_the_sweeper(chaos_settings, make_app, sweeper,
                                                                       monkeypatch, tmp_path):
    app = make_app(redis_url=chaos_settings.redis_url)
    sessions = app.extensions["portraits"].sessions

    def crash(*_):
        raise SystemExit("simulated crash after the commit, before the publish")

    monkeypatch.setattr("api.jobs.publish_upscale", crash)
    with pytest.raises(SystemExit):
        submit(partner_client(app), encode(synthetic_portrait(64)))
    with sessions() as s:
        (job_id,) = [str(i) for i in s.scalars(select(Job.id))]
    worker = WorkerProcess(chaos_settings, tmp_path / "worker.log").start()
    try:
        final = wait_terminal(sessions, [job_id], 60, on_fail=lambda: logs([worker.log_path, sweeper.log_path]))
    finally:
        worker.stop()
    assert final == {job_id: "succeeded"}


def test_duplicate_messages_delivered_concurrently_succeed_once(chaos_settings, make_app, storage, tmp_path):
    app = make_app(redis_url=chaos_settings.redis_url)
    services = app.extensions["portraits"]
    job_id = submit(partner_client(app), encode(synthetic_portrait(128)))
    for _ in range(30):
        publish_upscale(services.celery, uuid.UUID(job_id))
    fleet = Fleet(chaos_settings, tmp_path, size=3).start()
    try:
        final = wait_terminal(services.sessions, [job_id], 60, on_fail=lambda: logs(w.log_path for w in fleet.workers))
        deadline = time.monotonic() + 60  # let every duplicate be consumed
        while services.celery.connection_for_read().default_channel.client.llen("celery") and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        fleet.stop()
    assert final == {job_id: "succeeded"}
    assert success_events(services.sessions, [job_id]) == {job_id: 1}
    with services.sessions() as s:
        claims = s.scalar(select(func.count()).select_from(JobEvent).where(
            JobEvent.job_id == uuid.UUID(job_id), JobEvent.to_status == JobStatus.RUNNING))
    assert claims == 1
    assert objects_per_job(storage, [job_id])[job_id] == [f"jobs/{job_id}/original", f"jobs/{job_id}/result.png"]


class PoisonWorker(WorkerProcess):
    """A worker that dies (os._exit, like a segfault) while upscaling 13-px-wide images."""

    def _spawn(self, log):
        import subprocess
        import sys

        from tests.processes import ROOT, service_env

        return subprocess.Popen([sys.executable, "-m", "tests.chaos.poison_worker"], cwd=ROOT,
                                env=service_env(self.settings), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_poison_image_fails_after_max_attempts_while_others_flow(chaos_settings, make_app, sweeper, tmp_path):
    app = make_app(redis_url=chaos_settings.redis_url, max_attempts=chaos_settings.max_attempts)
    sessions = app.extensions["portraits"].sessions
    client = partner_client(app)
    poison = submit(client, encode(np.full((20, 13, 3), 128, np.uint8)))
    good = [submit(client, encode(synthetic_portrait(96, seed=i))) for i in range(6)]
    fleet = Fleet(chaos_settings, tmp_path, size=1, worker_cls=PoisonWorker).start()
    try:
        final = wait_terminal(sessions, [poison, *good], 180,
                              on_fail=lambda: logs([*(w.log_path for w in fleet.workers), sweeper.log_path]))
    finally:
        fleet.stop()
    assert final[poison] == "failed"
    assert all(final[g] == "succeeded" for g in good)
    with sessions() as s:
        job = s.get(Job, uuid.UUID(poison))
    assert job.attempts == chaos_settings.max_attempts and job.error_code == "worker_lost"
    assert fleet.restarts >= chaos_settings.max_attempts
