"""Task time limits, which Celery's solo pool does not enforce: the worker's heartbeat does. Past
TASK_SOFT_TIME_LIMIT an attempt stops at the next tile and fails as a transient `processing_timeout`;
past TASK_TIME_LIMIT its lease is no longer renewed. Time is the test's: a fake clock for the unit,
a worker whose tiles take a fixed time for the process."""
from __future__ import annotations

import uuid

import pytest

from tests.clock import FakeClock
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.polling import poll
from tests.processes import PacedWorkerProcess
from worker.heartbeat import Heartbeat, JobAborted



def test_heartbeat_applies_the_soft_then_the_hard_limit():
    clock = FakeClock(0.0)
    job = type("Job", (), {"id": uuid.uuid4(), "attempts": 1})()
    beat = Heartbeat(sessions=None, job=job, lease_seconds=30, interval=0.5, soft_limit=10, hard_limit=12,
                     clock=clock)
    clock.now = 9.9
    assert beat.over_limit() is False
    beat.progress(1, 4)  # still fine
    clock.now = 10.1
    assert beat.over_limit() is False  # soft: stop at the next tile, keep the lease
    with pytest.raises(JobAborted) as aborted:
        beat.progress(2, 4)
    assert aborted.value.reason == "timeout"
    clock.now = 12.1
    assert beat.over_limit() is True  # hard: stop renewing the lease


@pytest.mark.e2e
def test_an_attempt_past_the_soft_limit_fails_as_processing_timeout(settings, storage, make_app, keys,
                                                                     tmp_path):
    limited = settings.model_copy(update=dict(model_tile=32, task_soft_time_limit=1, task_time_limit=20,
                                              max_attempts=1, torch_threads=1))
    worker = PacedWorkerProcess(limited, tmp_path / "worker.log", tile_delay=0.25).start()
    try:
        from tests.conftest import authed

        client = authed(make_app(max_attempts=1), keys(partner="acme")[0])
        response = post_image(client, encode(synthetic_portrait(8 * 32)))  # 64 tiles x 0.25 s = 16 s
        job_id = response.get_json()["id"]
        job, _ = poll(lambda: client.get(f"/v1/jobs/{job_id}").get_json(),
                      lambda j: j["status"] not in ("queued", "running"), timeout=60)
    finally:
        worker.stop()
    assert job["status"] == "failed" and job["error_code"] == "processing_timeout", job
    assert job["attempts"] == 1 and job["error"] == "processing took longer than the time limit"
