"""Keeps a running job's lease alive, publishes its progress and relays cancel requests, within about
a second whatever the lease length.

A daemon thread runs one UPDATE every PROGRESS_INTERVAL_SECONDS (0.5 s by default): it renews the
lease, writes the latest tile progress and reads `cancel_requested` back. When the job was cancelled
or taken away (lease expired, another attempt claimed it) it sets `stop_reason`, and the model's next
per-tile progress callback raises `JobAborted`, so the upscale stops between tiles. A cancel is thus
noticed within one interval plus one tile, and a poller sees progress at most one interval old.
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
    def __init__(self, sessions, job: Job, lease_seconds: int, interval: float):
        self.sessions, self.job, self.lease, self.interval = sessions, job, lease_seconds, interval
        self.done: int | None = None
        self.total: int | None = None
        self.stop_reason: str | None = None
        self._failing = False
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

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()
