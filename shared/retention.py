"""Retention and erasure (README "Retention and erasure"). A job's original and result are personal
data — the only photo a family has of someone who died — kept no longer than needed.

The row always moves first and is committed, then the objects are deleted; never the other way round,
so a worker still running the job finds every fenced write refused and, having written its result
just before, deletes it again (worker/pipeline.py). A tombstone (`expired`, `erased`) keeps its
`result_key` until the sweeper has deleted its objects a last time, `settle_seconds` after it became one:
late enough that any attempt started before has hit its time limit, and a retry of any delete that failed.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable

from shared import lifecycle
from shared.models import Job
from shared.settings import Settings
from shared.storage import Storage, result_key


def object_keys(job: Job) -> tuple[str, str]:
    """Every object a job can have: its original and its result (whether or not written yet)."""
    return job.input_key, result_key(job.partner_id, job.id)


def delete_objects(storage: Storage, keys: Iterable[str]) -> None:
    for key in keys:
        storage.delete(key)  # deleting a missing object is not an error in S3


def settle_seconds(settings: Settings) -> int:
    """How long after an erase or expiry an attempt that started before it might still write: its hard
    time limit, plus one lease of slack. (An attempt stuck in native code past that deletes its own late
    write when its success transition is refused; only a crash right after such a write escapes both.)"""
    return settings.task_time_limit + settings.lease_seconds


def erase_job(sessions, storage: Storage, job_id: uuid.UUID, actor: str, reason: str) -> tuple[Job, bool]:
    """Erase one job now: the `erased` tombstone is committed, then its objects are deleted (again, if it
    was erased already: idempotent). Returns the job as it now is, and whether this call erased it. A
    storage error propagates after the commit: the job stays erased, and deleting again (or the
    sweeper's last pass) finishes the work."""
    with sessions() as session, session.begin():
        erased = lifecycle.erase(session, job_id, actor, reason)
        job = erased or session.get(Job, job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    delete_objects(storage, object_keys(job))
    return job, erased is not None
