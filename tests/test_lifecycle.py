"""The state machine against real Postgres: claims, fencing, retries, leases, cancel, requeue."""
from __future__ import annotations

import random
import threading
import uuid

import pytest
from sqlalchemy import text, update

from shared import lifecycle
from shared.failures import failure
from shared.db import make_engine, make_session_factory
from shared.models import Job, JobStatus

S = JobStatus


@pytest.fixture
def sessions(settings, clean_state):
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def new_job(sessions, allowed: int = 3) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), status=S.QUEUED, input_key="k", input_content_type="image/png",
              input_width=4, input_height=4, attempts=0, attempts_allowed=allowed, cancel_requested=False)
    with sessions() as s, s.begin():
        lifecycle.create(s, job)
    return job.id


def get(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def claim(sessions, job_id, worker="w1", lease=30):
    with sessions() as s, s.begin():
        return lifecycle.claim(s, job_id, worker, lease)


def history(sessions, job_id) -> list[tuple]:
    with sessions() as s:
        return [(e.from_status and e.from_status.value, e.to_status.value, e.attempt)
                for e in lifecycle.events(s, job_id)]


def expire_lease(sessions, job_id):
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.id == job_id).values(
            lease_expires_at=text("now() - interval '1 second'")))


def expire_leases(sessions) -> dict:
    """What the sweeper does: each stale lease in its own transaction."""
    moved = {}
    with sessions() as s:
        stale = lifecycle.stale_leases(s)
    for job_id in stale:
        with sessions() as s, s.begin():
            if (result := lifecycle.expire_lease(s, job_id, 0, 0)) is not None:
                moved[result[0].id] = result[1]
    return moved


def test_concurrent_claims_of_one_job_have_one_winner(sessions):
    job_id = new_job(sessions)
    wins, barrier = [], threading.Barrier(8)

    def racer(i):
        barrier.wait()
        if claim(sessions, job_id, worker=f"w{i}"):
            wins.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    job = get(sessions, job_id)
    assert job.status is S.RUNNING and job.attempts == 1 and job.worker == f"w{wins[0]}"
    assert history(sessions, job_id) == [(None, "queued", 0), ("queued", "running", 1)]
    with sessions() as s:  # the event is written by the claim's own statement, from the row it moved
        assert lifecycle.events(s, job_id)[-1].worker == f"w{wins[0]}"


def test_stale_worker_is_fenced_out_after_its_lease_was_taken(sessions):
    job_id = new_job(sessions)
    first = claim(sessions, job_id, "old")
    expire_lease(sessions, job_id)
    assert expire_leases(sessions) == {job_id: S.QUEUED}
    second = claim(sessions, job_id, "new")
    assert second.attempts == 2
    # The old attempt finishing late changes nothing: its attempt number no longer matches.
    with sessions() as s, s.begin():
        assert lifecycle.succeed(s, first, result_key="stale") is False
        assert lifecycle.heartbeat(s, first, 30, 1, 1) is None
    with sessions() as s, s.begin():
        assert lifecycle.succeed(s, second, result_key="fresh") is True
    job = get(sessions, job_id)
    assert job.status is S.SUCCEEDED and job.result_key == "fresh"
    # ...and a succeeded job is never finished twice.
    with sessions() as s, s.begin():
        assert lifecycle.succeed(s, second, result_key="again") is False
    assert [h[1] for h in history(sessions, job_id)].count("succeeded") == 1
    with sessions() as s:
        done = lifecycle.events(s, job_id)[-1]
        assert (done.to_status, done.attempt, done.worker) == (S.SUCCEEDED, 2, "new")


def test_transient_failures_back_off_then_fail_after_max_attempts(sessions):
    job_id = new_job(sessions, allowed=3)
    for attempt in (1, 2):
        job = claim(sessions, job_id)
        assert job.attempts == attempt
        with sessions() as s, s.begin():
            assert lifecycle.fail_or_retry(s, job, failure("storage_unavailable"), detail="boom", backoff=60) is S.QUEUED
        queued = get(sessions, job_id)
        assert queued.status is S.QUEUED and queued.next_attempt_at is not None
        assert claim(sessions, job_id) is None  # not due yet
        with sessions() as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id).values(next_attempt_at=None))
    job = claim(sessions, job_id)
    with sessions() as s, s.begin():
        assert lifecycle.fail_or_retry(s, job, failure("storage_unavailable"), detail="boom 3", backoff=0) is S.FAILED
    job = get(sessions, job_id)
    assert job.status is S.FAILED and job.attempts == 3
    # Partners see the stable code and its message; the detail is only in the event, for admins.
    assert (job.error_code, job.error) == ("storage_unavailable", failure("storage_unavailable").message)
    with sessions() as s:
        assert lifecycle.events(s, job_id)[-1].error == "storage_unavailable: boom 3"
    assert claim(sessions, job_id) is None


def test_permanent_error_fails_at_once(sessions):
    job_id = new_job(sessions)
    job = claim(sessions, job_id)
    with sessions() as s, s.begin():
        assert lifecycle.fail_or_retry(s, job, failure("image_undecodable"), detail="not an image", backoff=0) is S.FAILED
    assert get(sessions, job_id).attempts == 1


def test_lease_expiry_out_of_attempts_fails_and_cancel_requested_cancels(sessions):
    last = new_job(sessions, allowed=1)
    claim(sessions, last)
    wanted_cancel = new_job(sessions)
    claim(sessions, wanted_cancel)
    with sessions() as s, s.begin():
        lifecycle.request_cancel(s, wanted_cancel, actor="partner")
    fresh = new_job(sessions)
    claim(sessions, fresh)  # lease still valid: untouched
    for job_id in (last, wanted_cancel):
        expire_lease(sessions, job_id)
    assert expire_leases(sessions) == {last: S.FAILED, wanted_cancel: S.CANCELLED}
    assert get(sessions, last).error_code == "worker_lost"
    assert get(sessions, fresh).status is S.RUNNING


def test_cancel_queued_now_running_via_flag_terminal_never(sessions):
    queued = new_job(sessions)
    with sessions() as s, s.begin():
        assert lifecycle.request_cancel(s, queued, "partner").status is S.CANCELLED
    running = new_job(sessions)
    job = claim(sessions, running)
    with sessions() as s, s.begin():
        assert lifecycle.request_cancel(s, running, "partner").status is S.RUNNING
        assert lifecycle.heartbeat(s, job, 30, 1, 4) is True  # the worker learns of it
        assert lifecycle.cancel_running(s, job, "stopped")
    with sessions() as s, s.begin():
        assert lifecycle.request_cancel(s, running, "partner") is None
    assert history(sessions, running)[-1][:2] == ("running", "cancelled")


def test_requeue_only_from_failed_or_cancelled_and_only_once_concurrently(sessions):
    job_id = new_job(sessions, allowed=1)
    with sessions() as s, s.begin():
        assert lifecycle.requeue(s, job_id, "admin", "why", 3) is None  # queued: no
    job = claim(sessions, job_id)
    with sessions() as s, s.begin():
        lifecycle.fail_or_retry(s, job, failure("internal_error"), detail="bad", backoff=0)
    results, barrier = [], threading.Barrier(6)

    def racer():
        barrier.wait()
        with sessions() as s, s.begin():
            results.append(lifecycle.requeue(s, job_id, "admin", "retry after fix", 3) is not None)

    threads = [threading.Thread(target=racer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    job = get(sessions, job_id)
    assert job.status is S.QUEUED and job.attempts == 1 and job.attempts_allowed == 4 and job.error is None
    events = history(sessions, job_id)
    assert events[-1] == ("failed", "queued", 1)
    assert claim(sessions, job_id).attempts == 2  # fencing token keeps growing


def test_due_for_publish(sessions):
    never = new_job(sessions)
    published = new_job(sessions)
    with sessions() as s, s.begin():
        lifecycle.mark_published(s, [published])
    with sessions() as s:
        assert set(lifecycle.due_for_publish(s, republish_after=60, broker_empty=True)) == {never}
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.id == published).values(
            enqueued_at=text("now() - interval '2 minutes'")))
    with sessions() as s:
        # Published long ago: republished only when the broker holds nothing (the message was lost).
        assert set(lifecycle.due_for_publish(s, 60, broker_empty=False)) == {never}
        assert set(lifecycle.due_for_publish(s, 60, broker_empty=True)) == {never, published}


def test_backoff_grows_exponentially_with_jitter_and_cap():
    rng = random.Random(1)
    delays = [lifecycle.backoff_seconds(a, 2, 30, rng) for a in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        full = min(30, 2 * 2 ** (attempt - 1))
        assert full / 2 <= delay <= full
    assert delays[-1] <= 30
