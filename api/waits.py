"""Long polls: `GET /v1/jobs/<id>?wait=N` holds its answer until the job is final or N seconds passed.

A client that polls every few milliseconds for its result costs the machine more than the wait saves
it (bench/job_overhead.py: ~60 CPU-ms per 512² job at a 10 ms poll, API, client, Postgres and Redis
together) and still learns of the result up to a poll late. Every move of a job to a final status is
one statement that also runs `pg_notify('job_finished', <job id>)` (shared/lifecycle.py), which
Postgres delivers when, and only if, the move commits. Each API process listens on that channel on one connection of
its own, from a daemon thread started by the first wait (after gunicorn's fork), and wakes the
requests waiting on that job; a woken request reads the job again and answers once it is final.

A waiting request holds one of its process's threads (gunicorn gthread), so at most
POLL_WAITERS_PER_PROCESS requests of a process wait at a time; one more is answered at once, as a
plain poll, and says so (`Portraits-Wait: busy`): clients loop on `wait` anyway. The request's
database connection goes back to the pool while it waits. If the listening connection fails, it is
opened again (with backoff), and every waiter also reads its job every RECHECK_SECONDS: a notification
missed meanwhile delays an answer, it never loses one.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
from sqlalchemy.engine import make_url

from shared import metrics
from shared.lifecycle import FINISHED_CHANNEL

log = logging.getLogger(__name__)
RECHECK_SECONDS = 2.0  # a waiter reads its job at least this often, notification or not


class JobWaits:
    """The waiting requests of one API process and the connection that wakes them."""

    def __init__(self, database_url: str, max_waiters: int, recheck_seconds: float = RECHECK_SECONDS):
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._slots = threading.BoundedSemaphore(max_waiters) if max_waiters > 0 else None
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._events: dict[uuid.UUID, set[threading.Event]] = {}
        self._listening = threading.Event()  # set while the LISTEN connection is up
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def wait(self, job_id: uuid.UUID, read, is_final, seconds: float):
        """`read()` the job again until `is_final(job)` or `seconds` passed; returns (job, outcome) with
        outcome "final", "timeout" or "busy" (no free slot: the job read once, at once)."""
        job, outcome = self._wait(job_id, read, is_final, seconds)
        metrics.LONG_POLLS.labels(outcome).inc()
        return job, outcome

    def _wait(self, job_id: uuid.UUID, read, is_final, seconds: float):
        if self._slots is None or not self._slots.acquire(blocking=False):
            return read(), "busy"
        try:
            self._ensure_listening()
            woken = threading.Event()
            with self._lock:
                self._events.setdefault(job_id, set()).add(woken)
            try:
                deadline = time.monotonic() + seconds
                while True:
                    woken.clear()  # before the read: a move committed after it wakes the wait below
                    job = read()  # after registering: a move committed before it is seen here
                    if is_final(job):
                        return job, "final"
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return job, "timeout"
                    woken.wait(min(remaining, self._recheck))
            finally:
                with self._lock:
                    waiting = self._events.get(job_id, set())
                    waiting.discard(woken)
                    if not waiting:
                        self._events.pop(job_id, None)
        finally:
            self._slots.release()

    def waiting(self, job_id: uuid.UUID) -> int:
        """How many requests of this process wait on the job now."""
        with self._lock:
            return len(self._events.get(job_id, ()))

    def listening(self, timeout: float | None = None) -> bool:
        """Whether the LISTEN connection is up (waits up to `timeout` for it)."""
        return self._listening.wait(timeout)

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closed.clear()
                self._thread = threading.Thread(target=self._listen_forever, name="job-waits", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop listening (within a second); a later wait starts again."""
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    def _listen_forever(self) -> None:
        backoff = 0.5
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5,
                                     application_name="portraits-api-waits") as conn:
                    conn.execute(f"LISTEN {FINISHED_CHANNEL}")
                    self._listening.set()
                    backoff = 0.5
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=1.0):  # then a look at `_closed`
                            self._wake(note.payload)
            except Exception as exc:  # Postgres restarted or unreachable: waiters fall back to rechecks
                self._listening.clear()
                if self._closed.is_set():
                    break
                log.warning("job waits: the LISTEN connection failed (%s); reconnecting in %.1f s",
                            type(exc).__name__, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self._listening.clear()

    def _wake(self, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        with self._lock:
            for woken in self._events.get(job_id, ()):
                woken.set()
                metrics.LONG_POLL_WAKEUPS.inc()
