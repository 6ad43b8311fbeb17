"""Keeps a running job's lease alive and relays progress and cancel requests.

A daemon thread renews the lease every lease/3 seconds and writes the latest progress; when the job
was cancelled or taken away (lease expired, another attempt claimed it) it sets `stop_reason`, and the
next progress callback from the model raises `JobAborted`, so the upscale stops between tiles.
"""
from __future__ import annotations

import logging
import threading

from shared import lifecycle
from shared.models import Job

log = logging.getLogger(__name__)


class JobAborted(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "cancelled" or "lost"


class Heartbeat:
    def __init__(self, sessions, job: Job, lease_seconds: int):
        self.sessions, self.job, self.lease = sessions, job, lease_seconds
        self.done: int | None = None
        self.total: int | None = None
        self.stop_reason: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

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
        except Exception:  # a database blip: keep working, the lease has slack for a missed beat
            log.warning("heartbeat for job %s failed", self.job.id, exc_info=True)
            return
        if cancel is None:
            self.stop_reason = "lost"
        elif cancel:
            self.stop_reason = "cancelled"

    def _run(self) -> None:
        while not self._stopped.wait(max(1.0, self.lease / 3)):
            self.beat()
