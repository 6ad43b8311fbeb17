"""worker/overlap.py against the real Postgres and S3: jobs go through the overlapped stages with every
lifecycle rule kept. A job read ahead is not claimed until the model is free for it (it stays `queued`:
a cancel takes it at once, no attempt is spent on it), each job succeeds exactly once with its result
written, a read that failed is recorded as the job's failure, and `drain` waits for what is held.

The model is a stand-in that repeats pixels and can be held mid-job by the test (no sleeps, no timing).
"""
from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from sqlalchemy import func, select

from shared.models import Job, JobEvent, JobStatus
from shared.storage import result_key
from tests.fake_runtime import Runtime
from tests.imagegen import encode, post_image, synthetic_portrait
from worker.overlap import Overlap

S = JobStatus


class HeldUpscaler:
    """4x by repeating pixels; while `hold` is clear, each job waits for it in the model."""

    name, version = "repeat_x4", "test"

    def __init__(self):
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)  # released once per job that reached the model
        self.runs = []  # (shape, thread) of each run

    def upscale(self, pixels: np.ndarray, progress=None) -> np.ndarray:
        self.runs.append((pixels.shape, threading.current_thread()))
        self.entered.release()
        assert self.hold.wait(60), "the test never let the model go on"
        if progress:
            progress(1, 1)
        return pixels.repeat(4, axis=0).repeat(4, axis=1)


@pytest.fixture
def sessions(app):
    return app.extensions["portraits"].sessions


@pytest.fixture
def overlap(settings, sessions, storage):
    over = Overlap(Runtime(settings, sessions, storage, HeldUpscaler()))
    yield over
    over.rt.upscaler.hold.set()
    assert over.drain(60)


def submit(client, side: int = 24, seed: int = 0) -> str:
    response = post_image(client, encode(synthetic_portrait(side, seed=seed)))
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def status(sessions, job_id: str) -> JobStatus:
    with sessions() as s:
        return s.get(Job, uuid.UUID(job_id)).status


def claims(sessions, job_id: str) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(JobEvent).where(
            JobEvent.job_id == uuid.UUID(job_id), JobEvent.to_status == S.RUNNING))


def test_jobs_flow_through_the_stages_and_succeed_once_each(client, sessions, storage, overlap):
    ids = [submit(client, seed=i) for i in range(6)]
    for job_id in ids:
        assert overlap.submit(job_id) == "overlapped"
    assert overlap.submit(ids[0]) == "skipped"  # a duplicate message: claimed already, nothing happens
    assert overlap.drain(60)
    for job_id in ids:
        with sessions() as s:
            job = s.get(Job, uuid.UUID(job_id))
            succeeded = s.scalar(select(func.count()).select_from(JobEvent).where(
                JobEvent.job_id == job.id, JobEvent.to_status == S.SUCCEEDED))
        assert job.status is S.SUCCEEDED and succeeded == 1 and job.attempts == 1
        assert (job.output_width, job.output_height) == (96, 96)
        assert storage.exists(result_key(job.partner_id, job.id))


def test_a_job_read_ahead_is_not_claimed_until_the_model_is_free(client, sessions, overlap):
    model = overlap.rt.upscaler
    model.hold.clear()
    first, second, third = submit(client, seed=1), submit(client, seed=2), submit(client, seed=3)
    assert overlap.submit(first) == "overlapped"  # claimed and handed over: the task returns
    assert model.entered.acquire(timeout=60)  # the first job is in the model, held there
    outcomes = {}
    task = threading.Thread(target=lambda: outcomes.setdefault(second, overlap.submit(second)))
    task.start()  # the next task: reads and decodes the second job, then waits for the model
    task.join(0.5)
    assert task.is_alive()  # waiting for the model (it cannot have claimed: the model is held)
    assert status(sessions, second) is S.QUEUED and claims(sessions, second) == 0
    # A cancel of the job read ahead is immediate, as for any queued job; it is never claimed.
    assert client.post(f"/v1/jobs/{second}/cancel").status_code == 200
    model.hold.set()
    task.join(60)
    assert outcomes == {second: "skipped"}
    assert overlap.submit(third) == "overlapped"
    assert overlap.drain(60)
    assert status(sessions, first) is S.SUCCEEDED and status(sessions, third) is S.SUCCEEDED
    assert status(sessions, second) is S.CANCELLED and claims(sessions, second) == 0


def test_a_read_that_failed_is_recorded_once_the_job_is_claimed(client, sessions, storage, overlap):
    job_id = submit(client)
    with sessions() as s:
        storage.put(s.get(Job, uuid.UUID(job_id)).input_key, b"not an image at all", "image/png")
    assert overlap.submit(job_id) == "failed"  # permanent: the decoder refused it
    with sessions() as s:
        job = s.get(Job, uuid.UUID(job_id))
    assert job.status is S.FAILED and job.error_code == "image_undecodable" and job.attempts == 1
    assert claims(sessions, job_id) == 1


def test_drain_waits_for_the_jobs_held(client, sessions, overlap):
    model = overlap.rt.upscaler
    model.hold.clear()
    job_id = submit(client)
    assert overlap.submit(job_id) == "overlapped"
    assert model.entered.acquire(timeout=60)
    assert overlap.drain(0.2) is False and status(sessions, job_id) is S.RUNNING
    model.hold.set()
    assert overlap.drain(60) and status(sessions, job_id) is S.SUCCEEDED


def test_the_model_starts_in_the_model_thread_before_any_job_and_holds_it_like_one(client, sessions, settings,
                                                                                      overlap):
    """MODEL_PRELOAD: the model's first run (a blank tile) is in the thread that then runs the jobs, and
    a job read meanwhile stays queued, as behind a job in the model."""
    model = overlap.rt.upscaler
    model.hold.clear()
    overlap.start_model()
    assert model.entered.acquire(timeout=60)  # the blank tile is in the model, held there
    job_id = submit(client)
    outcomes = []
    task = threading.Thread(target=lambda: outcomes.append(overlap.submit(job_id)))
    task.start()
    task.join(0.5)
    assert task.is_alive() and status(sessions, job_id) is S.QUEUED and claims(sessions, job_id) == 0
    assert overlap.drain(0.2) is False  # a warm shutdown waits for the start too
    model.hold.set()
    task.join(60)
    assert outcomes == ["overlapped"] and overlap.drain(60) and status(sessions, job_id) is S.SUCCEEDED
    (blank_shape, blank_thread), (job_shape, job_thread) = model.runs
    assert blank_shape == (settings.model_tile, settings.model_tile, 3) and job_shape == (24, 24, 3)
    assert blank_thread is job_thread and blank_thread.name == "overlap-model"
