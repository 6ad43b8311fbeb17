"""One sweeper pass against the real Postgres, Redis and S3: a row that cannot be moved is skipped
and logged, never stopping the pass for other jobs; originals whose submit never finished are deleted
after the grace period, and only those."""
from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import text, update

from shared import lifecycle, uploads
from shared.db import make_engine, make_session_factory
from shared.models import Job, JobStatus
from shared.queue import make_celery
from worker.sweeper import sweep_once


@pytest.fixture
def sessions(settings, clean_state):
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    with engine.begin() as conn:  # the poison, if a test planted it
        conn.execute(text("DROP TRIGGER IF EXISTS poison ON jobs; DROP FUNCTION IF EXISTS poison()"))
    engine.dispose()


@pytest.fixture
def celery(settings):
    return make_celery(settings)


def running_job_with_expired_lease(sessions) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, input_key="k", input_content_type="image/png",
              input_width=4, input_height=4, attempts=0, attempts_allowed=3, cancel_requested=False)
    with sessions() as s, s.begin():
        lifecycle.create(s, job)
    with sessions() as s, s.begin():
        lifecycle.claim(s, job.id, "gone-worker", 30)
        s.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=text("now() - interval '1 s'")))
    return job.id


def status(sessions, job_id) -> JobStatus:
    with sessions() as s:
        return s.get(Job, job_id).status


def test_a_poisoned_row_never_stops_the_pass_for_the_others(sessions, celery, settings, storage, caplog):
    jobs = [running_job_with_expired_lease(sessions) for _ in range(4)]
    poisoned = jobs[1]
    with sessions() as s, s.begin():  # any UPDATE of this one row fails, as a bug or constraint would
        s.execute(text(f"""
            CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
              IF NEW.id = '{poisoned}' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER poison BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION poison();"""))
    with caplog.at_level(logging.INFO, logger="worker.sweeper"):
        report = sweep_once(sessions, celery, settings, storage)
    assert report.expired == 3 and report.errors == 1
    assert status(sessions, poisoned) is JobStatus.RUNNING
    assert all(status(sessions, j) is JobStatus.QUEUED for j in jobs if j != poisoned)
    # The same pass went on to publish the requeued jobs once their backoff is due.
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.status == JobStatus.QUEUED).values(next_attempt_at=None))
    assert sweep_once(sessions, celery, settings, storage).published == 3
    assert any(str(poisoned) in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_originals_of_unfinished_submits_are_deleted_after_the_grace_period(sessions, celery, settings,
                                                                            storage):
    orphan, owned, recent = (f"partners/p/jobs/{uuid.uuid4()}/original" for _ in range(3))
    for key in (orphan, owned, recent):
        storage.put(key, b"portrait bytes", "image/png")
        with sessions() as s, s.begin():
            uploads.record(s, key)
    with sessions() as s, s.begin():  # `owned` got its job after all (its settle was lost)
        lifecycle.create(s, Job(id=uuid.uuid4(), status=JobStatus.QUEUED, input_key=owned,
                                input_content_type="image/png", input_width=4, input_height=4, attempts=0,
                                attempts_allowed=3, cancel_requested=False))
        s.execute(update(uploads.PendingUpload).where(uploads.PendingUpload.key != recent).values(
            created_at=text(f"now() - interval '{settings.orphan_upload_grace_seconds + 1} seconds'")))
    report = sweep_once(sessions, celery, settings, storage)
    assert report.orphans_deleted == 1
    assert not storage.exists(orphan)
    assert storage.exists(owned) and storage.exists(recent)
    with sessions() as s:
        assert [k for k, _ in uploads.abandoned(s, 0)] == [recent]  # only the recent one is still pending
