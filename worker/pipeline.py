"""One job attempt, start to finish: claim, read the original, upscale, store the result, finish.

Safe to run any number of times for the same job: the claim is a conditional UPDATE, so a duplicate
message finds the job not claimable and stops, and every later write is fenced by the attempt number.
Each transition is logged once committed (shared/lifecycle.py); failures are classified by
worker/failures.py into a partner-safe code and message, with the detail kept for admins.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from model.images import decode_image, encode_png
from shared import lifecycle, logs, metrics
from shared.failures import Failure, failure
from shared.storage import RESULT_CONTENT_TYPE, result_key
from worker.decode_guard import decode_isolated
from worker.failures import classify, describe
from worker.heartbeat import Heartbeat, JobAborted

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def process_job(job_id: str, rt) -> str:
    """Run one attempt of the job; returns what happened (for logs, metrics and tests). Every line
    logged meanwhile carries the job's id."""
    outcome = "error"  # it raised: Celery redelivers the message, or the sweeper's lease takes over
    with logs.job_context(job_id):
        try:
            outcome = _attempt(job_id, rt)
        finally:
            metrics.TASKS.labels(outcome).inc()
    return outcome


def _attempt(job_id: str, rt) -> str:
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        log.error("ignoring a message with a malformed job id %r", job_id)
        return "ignored"
    with rt.sessions() as session, session.begin():
        job = lifecycle.claim(session, job_uuid, WORKER_ID, rt.settings.lease_seconds)
    if job is None:
        log.info("job %s is not claimable (done, running elsewhere, cancelled or not due); skipping", job_id)
        return "skipped"
    logs.bind(partner_id=job.partner_id)  # reset with the job's context when the attempt ends

    settings = rt.settings
    try:
        with Heartbeat(rt.sessions, job, settings.lease_seconds, settings.progress_interval_seconds,
                       soft_limit=settings.task_soft_time_limit, hard_limit=settings.task_time_limit) as beat:
            # In a child process: a decoder crash or hang fails this job (ImageDecodeError), not the worker.
            pixels = decode_isolated(rt.storage.get(job.input_key), max_pixels=settings.max_input_pixels,
                                     timeout=settings.decode_timeout_seconds,
                                     formats=settings.allowed_formats, decode=decode_image)
            beat.check()
            upscaler = rt.upscaler
            started = time.perf_counter()
            out = upscaler.upscale(pixels, progress=beat.progress)
            metrics.observe_model(upscaler, time.perf_counter() - started)
            beat.check()
            key = result_key(job.partner_id, job.id)
            # Written before the success transition, under a key fixed by the job id: a retry overwrites.
            rt.storage.put(key, encode_png(out, threads=_encode_threads(settings)), RESULT_CONTENT_TYPE)
    except JobAborted as exc:
        if exc.reason == "cancelled":
            with rt.sessions() as session, session.begin():
                lifecycle.cancel_running(session, job, "cancel requested; the worker stopped")
        elif exc.reason == "timeout":
            return _failed(rt, job, failure("processing_timeout"),
                           f"the attempt ran past TASK_SOFT_TIME_LIMIT ({settings.task_soft_time_limit} s)")
        else:
            log.info("job %s attempt %s stopped: it is no longer ours", job.id, job.attempts)
        return exc.reason
    except Exception as exc:  # SoftTimeLimitExceeded, MemoryError and storage errors are Exceptions too
        why = classify(exc)
        if why.code == "internal_error":  # a bug of ours: the traceback is worth its lines
            log.exception("job %s attempt %s: unexpected error", job.id, job.attempts)
        else:
            log.warning("job %s attempt %s: %s (%s)", job.id, job.attempts, why.code, describe(exc))
        return _failed(rt, job, why, describe(exc))

    height, width = out.shape[:2]
    with rt.sessions() as session, session.begin():
        ok = lifecycle.succeed(session, job, result_key=key, output_width=width, output_height=height,
                               model_name=upscaler.name, model_version=upscaler.version,
                               progress_done=beat.total, progress_total=beat.total)
    if not ok:
        log.warning("job %s attempt %s finished but no longer owned it; nothing recorded", job.id, job.attempts)
        _delete_result_if_erased(rt, job, key)
    return "succeeded" if ok else "lost"


def _encode_threads(settings) -> int:
    """As many as the model uses: the encode runs once the model is done with them."""
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
