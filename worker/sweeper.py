"""The sweeper: makes Postgres, not Redis, decide that every job finishes.

Each pass (every SWEEP_INTERVAL_SECONDS):
1. running jobs whose lease expired (worker killed, machine gone) go back to `queued` with backoff,
   or to `failed` once their attempts are used up, or to `cancelled` if a cancel was requested;
2. queued jobs whose message may be missing are published: never published (crash between commit and
   publish, Redis down at submit, retry now due), or published long ago while the broker queue is
   empty (Redis restarted and lost it). Duplicate messages are harmless: the task's claim is a
   conditional UPDATE;
3. idempotency keys older than IDEMPOTENCY_TTL_SECONDS are deleted.

Run it as its own process: `python -m worker.sweeper` (Procfile `sweeper`, compose `sweeper`).
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from celery import Celery

from shared import idempotency, lifecycle
from shared.db import make_engine, make_session_factory
from shared.queue import make_celery, publish_upscale
from shared.settings import Settings, get_settings

log = logging.getLogger("worker.sweeper")


@dataclass
class SweepReport:
    expired: int = 0
    published: int = 0
    broker_empty: bool | None = None
    idempotency_purged: int = 0

    def __str__(self) -> str:
        return (f"expired leases: {self.expired}, published: {self.published}, broker empty: {self.broker_empty}, "
                f"idempotency keys purged: {self.idempotency_purged}")


def broker_queue_length(celery: Celery, queue: str = "celery") -> int:
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return int(conn.default_channel.client.llen(queue))


def sweep_once(sessions, celery: Celery, settings: Settings) -> SweepReport:
    report = SweepReport()
    with sessions() as session, session.begin():
        moved = lifecycle.expire_leases(session, settings.retry_backoff_seconds,
                                        settings.retry_backoff_max_seconds)
    report.expired = len(moved)
    with sessions() as session, session.begin():
        report.idempotency_purged = idempotency.purge_expired(session, settings.idempotency_ttl_seconds)
    for job, status in moved:
        log.warning("job %s: lease expired, now %s", job.id, status.value)

    try:
        report.broker_empty = broker_queue_length(celery) == 0
    except Exception as exc:
        log.warning("broker unreachable (%s); will publish when it is back", exc)
        return report
    with sessions() as session:
        due = lifecycle.due_for_publish(session, settings.republish_after_seconds, report.broker_empty)
    published = []
    for job_id in due:
        try:
            publish_upscale(celery, job_id)
        except Exception as exc:
            log.warning("publishing job %s failed (%s); next pass retries", job_id, exc)
            break
        published.append(job_id)
    with sessions() as session, session.begin():
        lifecycle.mark_published(session, published)
    report.published = len(published)
    return report


def run_forever(settings: Settings, stop: threading.Event) -> None:
    sessions = make_session_factory(make_engine(settings.database_url))
    celery = make_celery(settings)
    log.info("sweeper running every %.1fs", settings.sweep_interval_seconds)
    while not stop.is_set():
        try:
            report = sweep_once(sessions, celery, settings)
            if report.expired or report.published:
                log.info("%s", report)
        except Exception:  # Postgres down, say: log and try again next pass, never exit
            log.exception("sweep failed")
        stop.wait(settings.sweep_interval_seconds)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(get_settings(), stop)


if __name__ == "__main__":
    main()
