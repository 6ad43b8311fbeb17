"""The job state machine. Every transition is ONE statement in the caller's transaction: a conditional
UPDATE (status, and for a worker's writes its attempt number) that also appends its `job_events` row.
A stale or duplicate actor matches no row and changes nothing.

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲  │              │ ├─fail (permanent, or attempts used up)──▶ failed ──requeue──▶ queued
      │  │              │ ├─retry (transient: backoff) ──▶ queued
      │  └──cancel──▶ cancelled ◀──cancel (worker noticed / lease expired)
      └──────────── lease expired (sweeper) ◀─┘
    succeeded | failed | cancelled ──RETENTION_DAYS after finished_at (sweeper)──▶ expired
    any status but erased ──DELETE /v1/jobs/<id>, partner purge──▶ erased

`expired` and `erased` are tombstones: the row stays (dimensions, timestamps, history), the original
and result are deleted. Until the sweeper has deleted them a last time (see `unpurged_tombstones`), a
tombstone's `result_key` is set: "objects may still exist under this job's keys".
"""
from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import (Interval, Select, String, and_, bindparam, cast, func, insert, literal, or_, select, text,
                        update)
from sqlalchemy.orm import Session, aliased

from shared import webhooks
from shared.failures import Failure, failure
from shared.models import Job, JobEvent, JobStatus
from shared.storage import result_key
from shared.transition_log import note

FINISHED_CHANNEL = "job_finished"  # Postgres NOTIFY channel: a committed move to a final status; payload: job id

Q, R, OK, FAIL, CANCEL = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                          JobStatus.CANCELLED)
EXPIRED, ERASED = JobStatus.EXPIRED, JobStatus.ERASED
TOMBSTONES = (EXPIRED, ERASED)  # the row stays, the objects are gone: no callback, no requeue
# Literal SQL (not bound parameters), so the planner can match the partial indexes of migration 0006.
_RETAINED_SQL = "jobs.status IN ('succeeded', 'failed', 'cancelled')"
_TOMBSTONE_SQL = "jobs.status IN ('expired', 'erased')"


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, scaled by a random 50–100 %."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (rng or random).uniform(0.5, 1.0)


def _event(session: Session, job: Job, frm: JobStatus | None, to: JobStatus, **fields) -> None:
    session.add(JobEvent(job_id=job.id, from_status=frm, to_status=to, attempt=job.attempts, **fields))
    note(session, job, frm, to, fields)


class Move(NamedTuple):
    """A transition's one statement (see `_move`): frm → to, and the event fields it writes."""

    frm: JobStatus
    to: JobStatus
    statement: Select


def _transition(frm: JobStatus, to: JobStatus, *where, values: dict, event_fields=()) -> Move:
    """frm → to as one statement: a conditional UPDATE whose returned row, if one matched, also writes
    its event (a data-modifying CTE): one round trip, and no unit of work to flush the event later.
    The job id is the bind parameter `job_id`, each event field `event_<name>`. Building it costs
    about a millisecond of Python (the CTE's columns): the worker's moves are built once, below."""
    moved = (update(Job).where(Job.id == bindparam("job_id"), Job.status == frm, *where)
             .values(status=to, updated_at=func.now(), **values)
             .returning(*Job.__table__.c).cte("moved"))
    columns = JobEvent.__table__.c
    fields = {"from_status": literal(frm, columns.from_status.type), "to_status": literal(to, columns.to_status.type),
              **{name: bindparam(f"event_{name}", type_=columns[name].type) for name in event_fields}}
    rows = select(moved.c.id, moved.c.attempts, *fields.values())
    write_event = insert(JobEvent).from_select(["job_id", "attempt", *fields], rows).cte("write_event")
    answer = [aliased(Job, moved)]
    if to.is_terminal():  # ...and tells the API processes waiting for the job to end (api/waits.py):
        # Postgres delivers the notification at commit, never for a rolled-back move.
        answer.append(func.pg_notify(FINISHED_CHANNEL, cast(moved.c.id, String)))
    statement = select(*answer).add_cte(write_event).execution_options(populate_existing=True)
    return Move(frm, to, statement)


def _run(session: Session, move: Move, job_id: uuid.UUID, event: dict | None = None, **params) -> Job | None:
    """Run a built transition; the job as it now is, or None when no row matched (nothing written)."""
    event = event or {}
    bound = {"job_id": job_id, **{f"event_{name}": value for name, value in event.items()}, **params}
    job = session.scalars(move.statement, bound).one_or_none()
    if job is not None:
        note(session, job, move.frm, move.to, event)
        if move.to.is_terminal() and move.to not in TOMBSTONES:  # no callback for an erase or an expiry
            webhooks.enqueue_event(session, job)  # same transaction: the callback cannot be lost
    return job


def _move(session: Session, job_id: uuid.UUID, frm: JobStatus, to: JobStatus, *where, values=None,
          event=None) -> Job | None:
    """frm → to, built for this one call (the rare moves; the worker's are built once, below)."""
    event = event or {}
    move = _transition(frm, to, *where, values=values or {}, event_fields=tuple(event))
    return _run(session, move, job_id, event)


def create(session: Session, job: Job, actor: str | None = None) -> None:
    session.add(job)
    session.flush()
    _event(session, job, None, Q, actor=actor)


def _claimable():
    return (Job.attempts < Job.attempts_allowed, Job.cancel_requested.is_(False),
            or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= func.now()))


# The worker's two moves per job, built once (bind parameters for everything that varies): building
# one costs more Python than running it.
_CLAIM = _transition(Q, R, *_claimable(), event_fields=("worker",), values=dict(
    attempts=Job.attempts + 1, started_at=func.now(), worker=bindparam("worker"),
    lease_expires_at=func.now() + bindparam("lease", type_=Interval()), next_attempt_at=None, progress_done=None,
    progress_total=None))
_SUCCEED = _transition(R, OK, Job.attempts == bindparam("attempt"), event_fields=("worker",), values=dict(
    finished_at=func.now(), lease_expires_at=None, error=None, error_code=None,
    **{name: bindparam(name) for name in ("result_key", "output_width", "output_height", "model_name",
                                          "model_version", "progress_done", "progress_total")}))


_CLAIMABLE_INPUT = select(Job.input_key).where(Job.id == bindparam("job_id"), Job.status == Q, *_claimable())


def claimable_input(session: Session, job_id: uuid.UUID) -> str | None:
    """The original's key of a job that `claim` would take now, else None (a read: nothing changes).
    Built once and run on the session's connection: a column needs no ORM (a third of this read's
    Python time per job in a drain of small jobs, bench/drain.py --profile)."""
    return session.connection().scalar(_CLAIMABLE_INPUT, {"job_id": job_id})


def claim(session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int) -> Job | None:
    """queued → running for a new attempt, holding a lease; None when not claimable now."""
    return _run(session, _CLAIM, job_id, event=dict(worker=worker), worker=worker,
                lease=timedelta(seconds=lease_seconds))


def heartbeat(session: Session, job: Job, lease_seconds: int, done: int | None, total: int | None):
    """Renew our lease and publish progress. Returns None if we lost the job, else cancel_requested."""
    return session.execute(
        update(Job).where(Job.id == job.id, Job.status == R, Job.attempts == job.attempts)
        .values(lease_expires_at=func.now() + timedelta(seconds=lease_seconds),
                progress_done=done, progress_total=total)
        .returning(Job.cancel_requested)).scalar_one_or_none()


def _fenced(job: Job):
    return (Job.attempts == job.attempts,)


def succeed(session: Session, job: Job, *, result_key: str, output_width: int | None = None,
            output_height: int | None = None, model_name: str | None = None, model_version: str | None = None,
            progress_done: int | None = None, progress_total: int | None = None) -> bool:
    """running → succeeded for this attempt (fields left out are NULL, as the claim left them); False
    if the job was no longer ours."""
    moved = _run(session, _SUCCEED, job.id, event=dict(worker=job.worker), attempt=job.attempts,
                 result_key=result_key, output_width=output_width, output_height=output_height,
                 model_name=model_name, model_version=model_version, progress_done=progress_done,
                 progress_total=progress_total)
    return moved is not None


def fail_or_retry(session: Session, job: Job, why: Failure, *, detail: str, backoff: float) -> JobStatus | None:
    """A failed attempt: permanent failures and the last allowed attempt fail the job; others requeue
    it after `backoff` seconds. The job shows partners only `why` (code and message); `detail` (the
    exception, which may name buckets, keys or hosts) goes to the job's event for admins.
    Returns the new status, or None if the job was no longer ours."""
    common = dict(error=why.message, error_code=why.code, lease_expires_at=None)
    noted = dict(worker=job.worker, error=f"{why.code}: {detail}"[:2000])
    if why.permanent or job.attempts >= job.attempts_allowed:
        moved = _move(session, job.id, R, FAIL, *_fenced(job), values=dict(finished_at=func.now(), **common),
                      event=noted)
        return FAIL if moved else None
    moved = _move(session, job.id, R, Q, *_fenced(job),
                  values=dict(next_attempt_at=func.now() + timedelta(seconds=backoff), enqueued_at=None,
                              worker=None, **common),
                  event=dict(noted, reason=f"retry in {backoff:.1f}s"))
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
    """failed | cancelled → queued with a fresh allowance of attempts. None unless it was in one of those:
    never an expired or erased job, whose original is gone."""
    for frm in (FAIL, CANCEL):
        job = _move(session, job_id, frm, Q,
                    values=dict(attempts_allowed=Job.attempts + max_attempts, next_attempt_at=None,
                                enqueued_at=None, cancel_requested=False, finished_at=None, error=None,
                                error_code=None, result_key=None, output_width=None, output_height=None),
                    event=dict(actor=actor, reason=reason))
        if job is not None:
            return job
    return None


def stale_leases(session: Session, limit: int = 500) -> list[uuid.UUID]:
    """Running jobs whose worker stopped renewing its lease."""
    return list(session.scalars(select(Job.id).where(Job.status == R, Job.lease_expires_at < func.now())
                                .order_by(Job.lease_expires_at).limit(limit)))


def expire_lease(session: Session, job_id: uuid.UUID, backoff_base: float,
                 backoff_cap: float) -> tuple[Job, JobStatus] | None:
    """A running job whose lease expired: cancelled if asked, failed if out of attempts, else queued
    again. Fenced on the attempt and the expiry, so a worker that comes back writes nothing, and a
    lease renewed in the meantime is left alone. None when nothing moved."""
    row = session.execute(select(Job.attempts, Job.attempts_allowed, Job.cancel_requested, Job.worker)
                          .where(Job.id == job_id)).one_or_none()
    if row is None:
        return None
    attempt, allowed, cancel, worker = row
    fence = (Job.attempts == attempt, Job.lease_expires_at < func.now())
    lost = failure("worker_lost")
    note = dict(worker=worker, error=f"worker_lost: worker {worker} stopped renewing its lease (killed or lost)")
    if cancel:
        to, values, note = CANCEL, dict(finished_at=func.now()), dict(note, reason="lease expired after a cancel request")
    elif attempt >= allowed:
        to, values = FAIL, dict(finished_at=func.now(), error=lost.message, error_code=lost.code)
    else:
        delay = backoff_seconds(attempt, backoff_base, backoff_cap)
        to = Q
        values = dict(next_attempt_at=func.now() + timedelta(seconds=delay), enqueued_at=None, worker=None,
                      lease_expires_at=None, error=lost.message, error_code=lost.code)
        note = dict(note, reason=f"lease expired; retry in {delay:.1f}s")
    job = _move(session, job_id, R, to, *fence, values=values, event=note)
    return (job, to) if job is not None else None


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


# -------------------------------------------------------------------------------- retention and erasure
def erase(session: Session, job_id: uuid.UUID, actor: str, reason: str) -> Job | None:
    """Any job but an erased one → erased: one conditional UPDATE from the status read under a row lock,
    so no claim, finish or requeue slips in between. A queued job can no longer be claimed; a running
    one's worker finds its fenced writes refused (its heartbeat stops it at the next tile). The caller
    deletes the objects after the commit. None when already erased, or no such job."""
    row = session.execute(select(Job.status, Job.partner_id).where(Job.id == job_id)
                          .with_for_update()).one_or_none()
    if row is None or row.status is ERASED:
        return None
    frm, partner_id = row
    values = dict(result_key=result_key(partner_id, job_id), lease_expires_at=None)
    if not frm.is_terminal():
        values.update(finished_at=func.now(), cancel_requested=True)
    return _move(session, job_id, frm, ERASED, values=values, event=dict(actor=actor, reason=reason))


def retention_due(session: Session, retention_days: int, limit: int = 200) -> list[uuid.UUID]:
    """Succeeded, failed and cancelled jobs that finished more than `retention_days` ago, oldest first.
    Queued and running jobs never expire."""
    return list(session.scalars(
        select(Job.id)
        .where(text(_RETAINED_SQL), Job.finished_at < func.now() - timedelta(days=retention_days))
        .order_by(Job.finished_at).limit(limit)))


def expire(session: Session, job_id: uuid.UUID, retention_days: int) -> Job | None:
    """A finished job past its retention → expired. Fenced on its status and finished_at, so a job
    requeued or erased meanwhile is left alone. The caller deletes the objects after the commit."""
    row = session.execute(select(Job.status, Job.partner_id).where(Job.id == job_id)).one_or_none()
    if row is None or row.status not in (OK, FAIL, CANCEL):
        return None
    return _move(session, job_id, row.status, EXPIRED,
                 Job.finished_at < func.now() - timedelta(days=retention_days),
                 values=dict(result_key=result_key(row.partner_id, job_id)),
                 event=dict(reason=f"retention: finished more than {retention_days} days ago"))


def unpurged_tombstones(session: Session, settle_seconds: float,
                        limit: int = 200) -> list[tuple[uuid.UUID, str, str]]:
    """(id, input_key, result_key) of expired and erased jobs whose objects may still exist, that became
    tombstones more than `settle_seconds` ago (shared/retention.py)."""
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.input_key, Job.result_key)
        .where(text(_TOMBSTONE_SQL), Job.result_key.is_not(None),
               Job.updated_at < func.now() - timedelta(seconds=settle_seconds))
        .order_by(Job.updated_at).limit(limit))]


def mark_purged(session: Session, job_id: uuid.UUID, settle_seconds: float) -> bool:
    """The tombstone's objects are deleted for good: clear its result_key (not a transition: no event)."""
    return session.execute(
        update(Job).where(Job.id == job_id, text(_TOMBSTONE_SQL), Job.result_key.is_not(None),
                          Job.updated_at < func.now() - timedelta(seconds=settle_seconds))
        .values(result_key=None)).rowcount == 1


def is_tombstone(session: Session, job_id: uuid.UUID) -> bool:
    """Expired or erased (or gone): nothing of the job may be (re)written to storage."""
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status is None or status in TOMBSTONES


def events(session: Session, job_id: uuid.UUID) -> list[JobEvent]:
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
