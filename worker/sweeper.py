"""The sweeper: makes Postgres, not Redis, decide that every job finishes.

Each pass (every SWEEP_INTERVAL_SECONDS):
1. running jobs whose lease expired (worker killed, machine gone) go back to `queued` with backoff,
   or to `failed` once their attempts are used up, or to `cancelled` if a cancel was requested;
2. queued jobs whose message may be missing are published: never published (crash between commit and
   publish, Redis down at submit, retry now due), or published long ago while the broker queue is
   empty (Redis restarted and lost it). Duplicate messages are harmless: the task's claim is a
   conditional UPDATE;
3. idempotency keys older than IDEMPOTENCY_TTL_SECONDS are deleted;
4. originals whose submit never wrote a job row are deleted after ORPHAN_UPLOAD_GRACE_SECONDS
   (shared/uploads.py);
5. finished jobs past RETENTION_DAYS become `expired` and their original and result are deleted; the
   objects of every tombstone (expired or erased) are deleted a last time once any attempt that started
   before it has hit its time limit (shared/retention.py).

Every job and every step has its own transaction and its own error handling: one row that cannot be
moved (a bug, a constraint, a trigger) is logged and skipped, and never stops the pass for the other
jobs and partners. Run it as its own process: `python -m worker.sweeper` (Procfile/compose `sweeper`).
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from celery import Celery
from sqlalchemy.exc import OperationalError

from shared import idempotency, lifecycle, logs, metrics, retention, uploads
from shared.db import make_engine, make_session_factory
from shared.queue import make_celery, publish_upscale
from shared.settings import Settings, get_settings
from shared.storage import Storage

log = logging.getLogger("worker.sweeper")


@dataclass
class SweepReport:
    expired: int = 0
    published: int = 0
    broker_empty: bool | None = None
    idempotency_purged: int = 0
    orphans_deleted: int = 0
    retention_expired: int = 0  # finished jobs past RETENTION_DAYS, now `expired`
    tombstones_purged: int = 0  # expired or erased jobs whose objects were deleted a last time
    errors: int = 0  # jobs or steps that failed this pass (each logged)

    def __str__(self) -> str:
        return (f"expired leases: {self.expired}, published: {self.published}, broker empty: {self.broker_empty}, "
                f"idempotency keys purged: {self.idempotency_purged}, orphaned originals deleted: "
                f"{self.orphans_deleted}, expired (retention): {self.retention_expired}, tombstones purged: "
                f"{self.tombstones_purged}, errors: {self.errors}")


def broker_queue_length(celery: Celery, queue: str = "celery") -> int:
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return int(conn.default_channel.client.llen(queue))


def _failed(report: SweepReport, what: str, exc: Exception) -> None:
    report.errors += 1
    if isinstance(exc, OperationalError):  # the database is down: expected, no traceback
        log.warning("%s: database unavailable (%s)", what, str(exc).splitlines()[0][:200])
    else:
        log.exception("%s failed; the rest of the pass goes on", what)


def expire_leases(sessions, settings: Settings, report: SweepReport) -> None:
    with sessions() as session:
        stale = lifecycle.stale_leases(session)
    for job_id in stale:
        with logs.job_context(job_id):
            try:
                with sessions() as session, session.begin():
                    moved = lifecycle.expire_lease(session, job_id, settings.retry_backoff_seconds,
                                                   settings.retry_backoff_max_seconds)
            except Exception as exc:
                _failed(report, f"expiring the lease of job {job_id}", exc)
                continue
            report.expired += moved is not None


def publish_due(sessions, celery: Celery, settings: Settings, report: SweepReport) -> None:
    try:
        report.broker_empty = broker_queue_length(celery) == 0
    except Exception as exc:
        log.warning("broker unreachable (%s); will publish when it is back", type(exc).__name__)
        return
    with sessions() as session:
        due = lifecycle.due_for_publish(session, settings.republish_after_seconds, report.broker_empty)
    for job_id in due:
        with logs.job_context(job_id):
            try:
                publish_upscale(celery, job_id)
            except Exception as exc:
                log.warning("publishing job %s failed (%s); the next pass retries", job_id,
                            type(exc).__name__)
                return  # the broker is down: the rest would fail the same way
            try:
                with sessions() as session, session.begin():
                    lifecycle.mark_published(session, [job_id])
            except Exception as exc:  # published twice next pass at worst: harmless
                _failed(report, f"marking job {job_id} published", exc)
                continue
            report.published += 1


def delete_orphaned_originals(sessions, storage: Storage, settings: Settings, report: SweepReport) -> None:
    with sessions() as session:
        abandoned = uploads.abandoned(session, settings.orphan_upload_grace_seconds)
    for key, has_job in abandoned:
        try:
            if not has_job:
                storage.delete(key)  # deleting a missing object is not an error in S3
            with sessions() as session, session.begin():
                uploads.forget(session, key)
        except Exception as exc:
            _failed(report, "deleting an orphaned original", exc)
            continue
        report.orphans_deleted += not has_job
        if not has_job:
            log.info("deleted an original whose submit never completed (%s)", key)


def expire_retained(sessions, storage: Storage, settings: Settings, report: SweepReport) -> None:
    """Finished jobs past RETENTION_DAYS → `expired`, then their objects deleted (row first: see
    shared/retention.py); then tombstones past the settle time get their objects deleted a last time, which
    also retries any delete that failed. A batch per pass, each job in its own transaction."""
    with sessions() as session:
        due = lifecycle.retention_due(session, settings.retention_days)
    for job_id in due:
        with logs.job_context(job_id):
            try:
                with sessions() as session, session.begin():
                    job = lifecycle.expire(session, job_id, settings.retention_days)
                report.retention_expired += job is not None
                if job is not None:
                    retention.delete_objects(storage, retention.object_keys(job))
            except Exception as exc:  # after the commit: the last pass deletes what is left
                _failed(report, f"expiring job {job_id} (retention)", exc)
    settle = retention.settle_seconds(settings)
    with sessions() as session:
        tombstones = lifecycle.unpurged_tombstones(session, settle)
    for job_id, input_key, result_key in tombstones:
        with logs.job_context(job_id):
            try:
                retention.delete_objects(storage, (input_key, result_key))
                with sessions() as session, session.begin():
                    report.tombstones_purged += lifecycle.mark_purged(session, job_id, settle)
            except Exception as exc:
                _failed(report, f"deleting the objects of {job_id}, expired or erased", exc)


def sweep_once(sessions, celery: Celery, settings: Settings, storage: Storage | None = None) -> SweepReport:
    report = SweepReport()
    storage = storage or Storage(settings)
    steps = [("expiring leases", lambda: expire_leases(sessions, settings, report)),
             ("publishing due jobs", lambda: publish_due(sessions, celery, settings, report)),
             ("purging idempotency keys", lambda: _purge_idempotency(sessions, settings, report)),
             ("deleting orphaned originals",
              lambda: delete_orphaned_originals(sessions, storage, settings, report)),
             ("expiring retained jobs", lambda: expire_retained(sessions, storage, settings, report))]
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            _failed(report, what, exc)
    metrics.observe_sweep(report)
    return report


def _purge_idempotency(sessions, settings: Settings, report: SweepReport) -> None:
    with sessions() as session, session.begin():
        report.idempotency_purged = idempotency.purge_expired(session, settings.idempotency_ttl_seconds)


def run_forever(settings: Settings, stop: threading.Event) -> None:
    sessions = make_session_factory(make_engine(settings.database_url, "portraits-sweeper"))
    celery, storage = make_celery(settings), Storage(settings)
    log.info("sweeper running every %.1fs", settings.sweep_interval_seconds)
    while not stop.is_set():
        report = sweep_once(sessions, celery, settings, storage)
        if (report.expired or report.published or report.orphans_deleted or report.retention_expired
                or report.tombstones_purged):
            log.info("%s", report)
        stop.wait(settings.sweep_interval_seconds)


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_format)
    metrics.serve(settings.metrics_port, settings.metrics_addr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(settings, stop)


if __name__ == "__main__":
    main()
