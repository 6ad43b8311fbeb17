"""Keeps a running job's lease alive, publishes its progress and relays cancel requests, within about
a second whatever the lease length.

A daemon thread runs one UPDATE every PROGRESS_INTERVAL_SECONDS (0.5 s by default): it renews the
lease, writes the latest tile progress and reads `cancel_requested` back. When the job was cancelled
or taken away (lease expired, another attempt claimed it) it sets `stop_reason`, and the model's next
per-tile progress callback raises `JobAborted`, so the upscale stops between tiles. A cancel is thus
noticed within one interval plus one tile, and a poller sees progress at most one interval old.

It also enforces the task time limits, which Celery's solo pool cannot (it has no way to interrupt a
running task). Past TASK_SOFT_TIME_LIMIT the attempt stops at the next
tile (`stop_reason = "timeout"`: a transient `processing_timeout`). Past TASK_TIME_LIMIT, when even
that did not happen (stuck in native code), the thread stops renewing the lease, so the sweeper gives
the job to another worker after LEASE_SECONDS; the fencing token keeps this one from writing later.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time

from shared import lifecycle
from shared.models import Job

log = logging.getLogger(__name__)


class JobAborted(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "cancelled", "lost" or "timeout"


class Heartbeat:
    def __init__(self, sessions, job: Job, lease_seconds: int, interval: float,
                 soft_limit: float | None = None, hard_limit: float | None = None, clock=time.monotonic):
        self.sessions, self.job, self.lease, self.interval = sessions, job, lease_seconds, interval
        self.soft_limit, self.hard_limit, self.clock = soft_limit, hard_limit, clock
        self.started = clock()
        self.done: int | None = None
        self.total: int | None = None
        self.stop_reason: str | None = None
        self._failing = False
        self._stopped = threading.Event()
        # In a copy of the task's context: its log lines carry the job's id too (shared/logs.py).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name=f"heartbeat-{job.id}", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (idempotent); the last transition follows, or the lease is left to expire."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def progress(self, done: int, total: int) -> None:
        """The model's per-tile callback: record progress, abort if we should stop."""
        self.done, self.total = done, total
        self.check()

    def check(self) -> None:
        if self.stop_reason:
            raise JobAborted(self.stop_reason)

    def beat(self) -> None:
        try:
            with self.sessions() as session, session.begin():
                cancel = lifecycle.heartbeat(session, self.job, self.lease, self.done, self.total)
        except Exception as exc:  # a database blip: keep working, the lease has slack for missed beats
            if not self._failing:  # once per outage, not twice a second
                log.warning("job %s: heartbeat failed (%s); retrying", self.job.id, type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("job %s: heartbeat recovered", self.job.id)
            self._failing = False
        if cancel is None:
            self.stop_reason = "lost"
        elif cancel:
            self.stop_reason = "cancelled"

    def over_limit(self) -> bool:
        """Apply the time limits; True once the hard limit passed (stop renewing the lease)."""
        elapsed = self.clock() - self.started
        if self.soft_limit is not None and elapsed > self.soft_limit and self.stop_reason is None:
            self.stop_reason = "timeout"
        if self.hard_limit is not None and elapsed > self.hard_limit:
            log.error("job %s attempt %s still running after TASK_TIME_LIMIT (%.0f s): its lease is left to "
                      "expire so another worker takes the job; this worker process is stuck and needs a "
                      "restart", self.job.id, self.job.attempts, self.hard_limit)
            return True
        return False

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            if self.over_limit():
                return
            self.beat()
