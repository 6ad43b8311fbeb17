"""One job attempt, start to finish: claim, read the original, upscale, store the result, finish.

Safe to run any number of times for the same job: the claim is a conditional UPDATE, so a duplicate
message finds the job not claimable and stops, and every later write is fenced by the attempt number.
Each transition is logged once committed (shared/lifecycle.py); failures are classified by
worker/failures.py into a partner-safe code and message, with the detail kept for admins.

The attempt is cut into stages, so that worker/overlap.py can run one job's model while the next job
is read and decoded and the last one's result is encoded and stored: `start` (read and decode the
original of a claimable job, then claim it: a read needs no lease, and a job is claimed only when its
model is about to run), then `upscale`, `store` and `finish` through `Attempt.step`. `process_job`
runs them one after the other. From its claim to its last transition an attempt holds its lease (its
Heartbeat renews it, relays cancels and applies the time limits), whichever thread runs which stage.
A read or decode that failed is recorded once the job is claimed, exactly as if it had failed after.
The claimable read, the claim, the heartbeat's renewals and a success without a callback are one
statement each and run in autocommit (`rt.statements`, shared/db.py): no BEGIN or COMMIT round trips
(tests/test_worker_round_trips.py reads them off the wire).
"""
from __future__ import annotations

import contextvars
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from model.crop import apply_crop
from model.images import decode_image
from model.png import encode_png
from shared import lifecycle, logs, metrics, webhooks
from shared.failures import Failure, failure
from shared.models import Job
from shared.storage import RESULT_CONTENT_TYPE, result_key
from worker.decode_guard import decode_isolated
from worker.failures import classify, describe
from worker.heartbeat import Heartbeat, JobAborted

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def process_job(job_id: str, rt) -> str:
    """Run one attempt of the job, stage after stage; returns what happened (for logs, metrics and
    tests). Every line logged meanwhile carries the job's id."""
    outcome = "error"  # it raised: Celery redelivers the message, or the sweeper's lease takes over
    with logs.job_context(job_id):
        try:
            attempt = start(job_id, rt)
            if isinstance(attempt, str):
                outcome = attempt
            else:
                outcome = attempt.step(upscale) or attempt.step(store) or attempt.finish()
        finally:
            metrics.TASKS.labels(outcome).inc()
    return outcome


@dataclass
class Attempt:
    """A claimed job on its way through the stages, with its lease's heartbeat running."""

    rt: object
    job: Job
    beat: Heartbeat
    context: contextvars.Context = field(default_factory=contextvars.copy_context)  # the job's log fields
    pixels: np.ndarray | None = None  # decoded original
    out: np.ndarray | None = None  # the model's result
    key: str | None = None  # where the result was written

    def step(self, stage) -> str | None:
        """Run `stage(self)` in the job's log context; None to go on, or how the attempt ended (its
        failure, cancel or loss recorded and its heartbeat stopped)."""
        return self.context.run(self._step, stage)

    def finish(self) -> str:
        """Stop the heartbeat and record the success (the result is stored): the last stage."""
        return self.context.run(_succeed, self)

    def _step(self, stage) -> str | None:
        try:
            stage(self)
            return None
        except JobAborted as exc:
            self.beat.stop()
            return _aborted(self, exc)
        except Exception as exc:  # SoftTimeLimitExceeded, MemoryError and storage errors are Exceptions too
            self.beat.stop()
            return _errored(self, exc)


def start(job_id: str, rt, before_claim=None) -> Attempt | str:
    """Read and decode the original of a job that is claimable now, call `before_claim()`, then claim
    the job (its heartbeat started); or why not ("ignored", "skipped", or the recorded failure of the
    read or decode). Call it in the job's log context: the attempt keeps a copy for its later stages."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        log.error("ignoring a message with a malformed job id %r", job_id)
        return "ignored"
    with rt.statements() as session:
        input_key = lifecycle.claimable_input(session, job_uuid)
    pixels = error = None
    if input_key is not None:
        try:
            pixels = _read(rt, input_key)
        except Exception as exc:  # recorded below, once the job is ours
            error = exc
    if before_claim is not None:
        before_claim()
    attempt = claim(job_uuid, rt) if input_key is not None else None
    if attempt is None:
        log.info("job %s is not claimable (done, running elsewhere, cancelled or not due); skipping", job_id)
        return "skipped"
    if error is not None:
        attempt.beat.stop()
        return attempt.context.run(_errored, attempt, error)
    attempt.pixels = pixels
    return attempt


def claim(job_id: uuid.UUID, rt) -> Attempt | None:
    """queued → running, with the heartbeat started; None if the job is not claimable."""
    settings = rt.settings
    with rt.statements() as session, session.begin():  # one statement (a CTE): no transaction needed
        job = lifecycle.claim(session, job_id, WORKER_ID, settings.lease_seconds)
    if job is None:
        return None
    logs.bind(partner_id=job.partner_id)  # reset with the job's context when the attempt ends
    beat = Heartbeat(rt.statements, job, settings.lease_seconds, settings.progress_interval_seconds,
                     soft_limit=settings.task_soft_time_limit, hard_limit=settings.task_time_limit).start()
    return Attempt(rt, job, beat)


def _read(rt, input_key: str) -> np.ndarray:
    settings = rt.settings
    with metrics.STAGE.labels("read").time():
        data = rt.storage.get(input_key)
    # In a child process: a decoder crash or hang fails this job (ImageDecodeError), not the worker.
    with metrics.STAGE.labels("decode").time():
        return decode_isolated(data, max_pixels=settings.max_input_pixels,
                               timeout=settings.decode_timeout_seconds, formats=settings.allowed_formats,
                               decode=decode_image)


def upscale(a: Attempt) -> None:
    upscaler = a.rt.upscaler
    # POST /v1/jobs `crop`: that region only (None: all). Here, not at the read: a job read ahead is
    # not claimed yet, and only its claim gives the row.
    a.pixels = apply_crop(a.pixels, a.job.crop_box)
    started = time.perf_counter()
    a.out = upscaler.upscale(a.pixels, progress=a.beat.progress)
    metrics.observe_model(upscaler, time.perf_counter() - started)
    a.pixels = None
    a.beat.check()


def store(a: Attempt) -> None:
    a.key = result_key(a.job.partner_id, a.job.id)
    with metrics.STAGE.labels("encode").time():
        png = encode_png(a.out, threads=_encode_threads(a.rt.settings))
    # Written before the success transition, under a key fixed by the job id: a retry overwrites.
    with metrics.STAGE.labels("store").time():
        a.rt.storage.put(a.key, png, RESULT_CONTENT_TYPE)


def _succeed(a: Attempt) -> str:
    a.beat.stop()
    job, rt, beat = a.job, a.rt, a.beat
    height, width = a.out.shape[:2]
    upscaler = rt.upscaler
    # One statement, unless the partner gets a callback: its delivery row is written in the same
    # transaction (shared/webhooks.py), so that the callback cannot be lost.
    sessions = rt.sessions if webhooks.wants_callback(job) else rt.statements
    with metrics.STAGE.labels("record").time(), sessions() as session, session.begin():
        ok = lifecycle.succeed(session, job, result_key=a.key, output_width=width, output_height=height,
                               model_name=upscaler.name, model_version=upscaler.version,
                               progress_done=beat.total, progress_total=beat.total)
    a.out = None
    if not ok:
        log.warning("job %s attempt %s finished but no longer owned it; nothing recorded", job.id, job.attempts)
        _delete_result_if_erased(rt, job, a.key)
    return "succeeded" if ok else "lost"


def _aborted(a: Attempt, exc: JobAborted) -> str:
    job, rt, settings = a.job, a.rt, a.rt.settings
    if exc.reason == "cancelled":
        with rt.sessions() as session, session.begin():
            lifecycle.cancel_running(session, job, "cancel requested; the worker stopped")
    elif exc.reason == "timeout":
        return _failed(rt, job, failure("processing_timeout"),
                       f"the attempt ran past TASK_SOFT_TIME_LIMIT ({settings.task_soft_time_limit} s)")
    else:
        log.info("job %s attempt %s stopped: it is no longer ours", job.id, job.attempts)
    return exc.reason


def _errored(a: Attempt, exc: BaseException) -> str:
    job = a.job
    why = classify(exc)
    if why.code == "internal_error":  # a bug of ours: the traceback is worth its lines
        log.exception("job %s attempt %s: unexpected error", job.id, job.attempts)
    else:
        log.warning("job %s attempt %s: %s (%s)", job.id, job.attempts, why.code, describe(exc))
    return _failed(a.rt, job, why, describe(exc))


def _encode_threads(settings) -> int:
    """As many as the model uses (TORCH_THREADS): a 2048² PNG in 17 ms on 2 threads, 27 ms on one
    (bench/png.py). With WORKER_OVERLAP the next job's model may run meanwhile, and they share the cores."""
    return settings.torch_threads or os.cpu_count() or 1


def _delete_result_if_erased(rt, job, key: str) -> None:
    """The result was written before the success transition, which found the job taken away. If it was
    erased or expired meanwhile, that write may have come after the erase deleted the objects: delete it
    again (read after our write, so an erase committed later deletes it itself). Any other owner of the
    job (a retry) overwrites the same key, so it is left alone. If this fails, the sweeper's last pass
    over the tombstone deletes it (shared/retention.py)."""
    try:
        with rt.sessions() as session:
            erased = lifecycle.is_tombstone(session, job.id)
        if erased:
            rt.storage.delete(key)
            log.info("job %s was erased or expired during attempt %s; deleted the result it wrote", job.id,
                     job.attempts)
    except Exception as exc:
        log.warning("job %s: could not delete the result written after its erasure (%s); the sweeper will",
                    job.id, type(exc).__name__)


def _failed(rt, job, why: Failure, detail: str) -> str:
    settings = rt.settings
    delay = lifecycle.backoff_seconds(job.attempts, settings.retry_backoff_seconds,
                                      settings.retry_backoff_max_seconds)
    with rt.sessions() as session, session.begin():
        status = lifecycle.fail_or_retry(session, job, why, detail=detail, backoff=delay)
    return status.value if status else "lost"
