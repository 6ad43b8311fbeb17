"""The Celery app configuration shared by the API (which only publishes) and the workers.

Messages carry the job id only; the task re-reads the row. Status lives in Postgres, so there is no
result backend.
"""
from __future__ import annotations

import uuid

from celery import Celery

from shared.settings import Settings

UPSCALE_TASK = "worker.upscale_portrait"


def make_celery(settings: Settings, main: str = "portraits") -> Celery:
    app = Celery(main, broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # At-least-once: a task is acknowledged after it ran, and requeued if its process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One long task at a time per process: nothing waits behind a slow upscale in a prefetch buffer.
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        # Redis redelivers unacknowledged messages after this; it must exceed the hard time limit or
        # a task still running would be delivered a second time.
        # Unacked messages are scanned every interval x throttle seconds (default 10 x 10 = 100 s, so a
        # killed worker's message came back ~100 s after the timeout); 10 x 1 keeps that to ~10 s.
        # The fast path is not this but the sweeper's Postgres leases (LEASE_SECONDS).
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout,
                                  "unacked_restore_interval": 10, "unacked_restore_throttle": 1},
        broker_connection_retry_on_startup=True,
        # Publishing must fail fast when Redis is down instead of blocking an API thread.
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                   "interval_max": 1},
        worker_hijack_root_logger=False,
    )
    return app


def publish_upscale(app: Celery, job_id: uuid.UUID) -> None:
    """Publish the job after its row is committed (never before: the task must find the row)."""
    app.send_task(UPSCALE_TASK, args=[str(job_id)])
