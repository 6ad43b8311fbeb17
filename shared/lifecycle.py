"""The job state machine. Every transition is ONE conditional UPDATE (status, and for a worker's writes
its attempt number) plus an append-only `job_events` row, in the caller's transaction. A stale or
duplicate actor matches no row and changes nothing.

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲  │              │ ├─fail (permanent, or attempts used up)──▶ failed ──requeue──▶ queued
      │  │              │ ├─retry (transient: backoff) ──▶ queued
      │  └──cancel──▶ cancelled ◀──cancel (worker noticed / lease expired)
      └──────────── lease expired (sweeper) ◀─┘
"""
from __future__ import annotations

import random
import uuid
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared import webhooks
from shared.models import Job, JobEvent, JobStatus

Q, R, OK, FAIL, CANCEL = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                          JobStatus.CANCELLED)


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, scaled by a random 50–100 %."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (rng or random).uniform(0.5, 1.0)


def _event(session: Session, job: Job, frm: JobStatus | None, to: JobStatus, **fields) -> None:
    session.add(JobEvent(job_id=job.id, from_status=frm, to_status=to, attempt=job.attempts, **fields))


def _move(session: Session, job_id: uuid.UUID, frm: JobStatus, to: JobStatus, *where, values=None,
          event=None) -> Job | None:
    """frm → to in one conditional UPDATE; the event is written only when the row matched."""
    job = session.execute(
        update(Job).where(Job.id == job_id, Job.status == frm, *where)
        .values(status=to, updated_at=func.now(), **(values or {}))
        .returning(Job).execution_options(populate_existing=True)).scalar_one_or_none()
    if job is not None:
        _event(session, job, frm, to, **(event or {}))
        if to.is_terminal():
            webhooks.enqueue_event(session, job)  # same transaction: the callback cannot be lost
    return job


def create(session: Session, job: Job, actor: str | None = None) -> None:
    session.add(job)
    session.flush()
    _event(session, job, None, Q, actor=actor)


def claim(session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int) -> Job | None:
    """queued → running for a new attempt, holding a lease; None when not claimable now."""
    return _move(
        session, job_id, Q, R,
        Job.attempts < Job.attempts_allowed, Job.cancel_requested.is_(False),
        or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= func.now()),
        values=dict(attempts=Job.attempts + 1, started_at=func.now(), worker=worker,
                    lease_expires_at=func.now() + timedelta(seconds=lease_seconds),
                    next_attempt_at=None, progress_done=None, progress_total=None),
        event=dict(worker=worker))


def heartbeat(session: Session, job: Job, lease_seconds: int, done: int | None, total: int | None):
    """Renew our lease and publish progress. Returns None if we lost the job, else cancel_requested."""
    return session.execute(
        update(Job).where(Job.id == job.id, Job.status == R, Job.attempts == job.attempts)
        .values(lease_expires_at=func.now() + timedelta(seconds=lease_seconds),
                progress_done=done, progress_total=total)
        .returning(Job.cancel_requested)).scalar_one_or_none()


def _fenced(job: Job):
    return (Job.attempts == job.attempts,)


def succeed(session: Session, job: Job, **values) -> bool:
    done = dict(finished_at=func.now(), lease_expires_at=None, error=None, **values)
    return _move(session, job.id, R, OK, *_fenced(job), values=done, event=dict(worker=job.worker)) is not None


def fail_or_retry(session: Session, job: Job, error: str, *, permanent: bool, backoff: float) -> JobStatus | None:
    """A failed attempt: permanent errors and the last allowed attempt fail the job; others requeue it
    after `backoff` seconds. Returns the new status, or None if the job was no longer ours."""
    common = dict(error=error[:2000], lease_expires_at=None)
    if permanent or job.attempts >= job.attempts_allowed:
        moved = _move(session, job.id, R, FAIL, *_fenced(job), values=dict(finished_at=func.now(), **common),
                      event=dict(worker=job.worker, error=error[:2000]))
        return FAIL if moved else None
    moved = _move(session, job.id, R, Q, *_fenced(job),
                  values=dict(next_attempt_at=func.now() + timedelta(seconds=backoff), enqueued_at=None,
                              worker=None, **common),
                  event=dict(worker=job.worker, error=error[:2000], reason=f"retry in {backoff:.1f}s"))
    return Q if moved else None


def cancel_running(session: Session, job: Job, reason: str) -> bool:
    """A worker that noticed a cancel request stops and records it."""
    return _move(session, job.id, R, CANCEL, *_fenced(job),
                 values=dict(finished_at=func.now(), lease_expires_at=None),
                 event=dict(worker=job.worker, reason=reason)) is not None


def request_cancel(session: Session, job_id: uuid.UUID, actor: str | None) -> Job | None:
    """Cancel a queued job at once; flag a running one for its worker. None if neither applies."""
    job = _move(session, job_id, Q, CANCEL, values=dict(finished_at=func.now(), cancel_requested=True),
                event=dict(actor=actor, reason="cancelled while queued"))
    if job is None:
        job = session.execute(
            update(Job).where(Job.id == job_id, Job.status == R).values(cancel_requested=True)
            .returning(Job).execution_options(populate_existing=True)).scalar_one_or_none()
    return job


def requeue(session: Session, job_id: uuid.UUID, actor: str, reason: str, max_attempts: int) -> Job | None:
    """failed | cancelled → queued with a fresh allowance of attempts. None unless it was in one of those."""
    for frm in (FAIL, CANCEL):
        job = _move(session, job_id, frm, Q,
                    values=dict(attempts_allowed=Job.attempts + max_attempts, next_attempt_at=None,
                                enqueued_at=None, cancel_requested=False, finished_at=None, error=None,
                                result_key=None, output_width=None, output_height=None),
                    event=dict(actor=actor, reason=reason))
        if job is not None:
            return job
    return None


def expire_leases(session: Session, backoff_base: float, backoff_cap: float) -> list[tuple[Job, JobStatus]]:
    """Running jobs whose worker stopped renewing: cancelled if asked, failed if out of attempts,
    else queued again. Each move is fenced, so a worker that comes back writes nothing."""
    stale = session.execute(select(Job.id, Job.attempts, Job.attempts_allowed, Job.cancel_requested, Job.worker)
                            .where(Job.status == R, Job.lease_expires_at < func.now())).all()
    moved = []
    for job_id, attempt, allowed, cancel, worker in stale:
        fence = (Job.attempts == attempt, Job.lease_expires_at < func.now())
        note = dict(worker=worker, error=f"worker {worker} stopped renewing its lease (lost or killed)")
        if cancel:
            job = _move(session, job_id, R, CANCEL, *fence, values=dict(finished_at=func.now()),
                        event=dict(note, reason="lease expired after a cancel request"))
            to = CANCEL
        elif attempt >= allowed:
            job = _move(session, job_id, R, FAIL, *fence,
                        values=dict(finished_at=func.now(), error=f"{note['error']}; no attempts left"),
                        event=note)
            to = FAIL
        else:
            delay = backoff_seconds(attempt, backoff_base, backoff_cap)
            job = _move(session, job_id, R, Q, *fence,
                        values=dict(next_attempt_at=func.now() + timedelta(seconds=delay), enqueued_at=None,
                                    worker=None, lease_expires_at=None, error=note["error"]),
                        event=dict(note, reason=f"lease expired; retry in {delay:.1f}s"))
            to = Q
        if job is not None:
            moved.append((job, to))
    return moved


def due_for_publish(session: Session, republish_after: int, broker_empty: bool, limit: int = 500) -> list[uuid.UUID]:
    """Queued jobs whose message must be (re)published: never published (crash between commit and
    publish, broker down, retry due), or published long ago while the broker holds nothing (lost)."""
    due = or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= func.now())
    never = Job.enqueued_at.is_(None)
    lost = and_(Job.enqueued_at < func.now() - timedelta(seconds=republish_after)) if broker_empty else False
    return list(session.scalars(select(Job.id).where(Job.status == Q, due, or_(never, lost))
                                .order_by(Job.created_at).limit(limit)))


def mark_published(session: Session, job_ids: list[uuid.UUID]) -> None:
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == Q).values(enqueued_at=func.now()))


def events(session: Session, job_id: uuid.UUID) -> list[JobEvent]:
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
