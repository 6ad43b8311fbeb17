"""Prometheus metrics that processes observe as they work (README "Metrics" lists every one).

The job series are counted in one place, the hook that logs committed transitions
(shared/lifecycle.py), so each process counts the transitions it made: the API submits and cancels,
the worker claims and finishes, the sweeper expires leases. Every metric has a label, so a process
that never observes one does not show it as a zero.

The worker, sweeper and deliverer serve their own endpoint (`serve`, METRICS_PORT); the API serves
GET /metrics (api/metrics.py), summing its gunicorn workers' files (gunicorn.conf.py).
"""
from __future__ import annotations

import dataclasses
import logging

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

# Seconds. A job's life spans queueing, retries with backoff and a long upscale; a model run is shorter.
JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# A worker stage outside the model takes from a millisecond (a 128² original's read) to seconds (a large
# result's PNG on a slow S3).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TRANSITIONS = Counter("portraits_job_transitions", "Job state changes committed by this process "
                      "(from_status=new for a submit).", ["from_status", "to_status"])
FAILURES = Counter("portraits_job_failures", "Failed job attempts by error code; outcome: retried (queued "
                   "again with backoff) or failed (permanent error, or attempts used up).",
                   ["error_code", "outcome"])
WAIT = Histogram("portraits_job_wait_seconds", "From submit to the claim of an attempt (attempt=retry "
                 "includes the earlier attempts and their backoff).", ["attempt"], buckets=JOB_BUCKETS)
RUN = Histogram("portraits_job_run_seconds", "From the claim of the final attempt to its end.", ["status"],
                buckets=RUN_BUCKETS)
DURATION = Histogram("portraits_job_duration_seconds", "From submit to the job's terminal state.", ["status"],
                     buckets=JOB_BUCKETS)

MODEL = Histogram("portraits_model_seconds", "Time the model took to upscale one image (decode and storage "
                  "excluded).", ["model", "version", "device"], buckets=RUN_BUCKETS)
STAGE = Histogram("portraits_worker_stage_seconds", "Time an attempt spent in each of the worker's stages "
                  "beside the model: read (the original from S3), decode (in the decoder process), encode "
                  "(the result's PNG), store (its S3 put), record (the success transition). Failed stages "
                  "count too.", ["stage"], buckets=STAGE_BUCKETS)
WORKER_STAGES = ("read", "decode", "encode", "store", "record")  # in a job's order: the model after decode
TASKS = Counter("portraits_worker_tasks", "Upscale tasks the worker ran, by what happened: succeeded, "
                "queued (retry), failed, cancelled, skipped (not claimable: duplicate, done, not due), "
                "lost (taken away mid-run), ignored (malformed message).", ["outcome"])

LONG_POLLS = Counter("portraits_api_long_polls", "GET /v1/jobs/<id>?wait= answers of jobs that were queued or "
                     "running, by outcome: final, timeout, busy (no free waiter: answered at once).", ["outcome"])
LONG_POLL_WAKEUPS = Counter("portraits_api_long_poll_wakeups", "Waiting long polls woken by the notification of "
                            "their job's move to a final status (the rest wake on their recheck or deadline).")

DELIVERIES = Counter("portraits_webhook_deliveries", "Callback POSTs by outcome: delivered, retrying "
                     "(will be tried again), failed (refused URL or retry window over).", ["outcome"])
DELIVERY_TIME = Histogram("portraits_webhook_delivery_seconds", "Time of one callback attempt.", ["outcome"])

SWEEPS = Counter("portraits_sweeper_passes", "Sweep passes, by outcome: ok, or errors (some job or step "
                 "failed; each is logged).", ["outcome"])
SWEEP_ACTIONS = Counter("portraits_sweeper_actions", "What sweep passes did, by action (README \"Metrics\").",
                        ["action"])
# SweepReport field → action; a field not named here is its own action (e.g. retention_expired).
SWEEP_ACTION_NAMES = {"expired": "lease_expired", "published": "job_published",
                      "orphans_deleted": "orphan_deleted", "idempotency_purged": "idempotency_key_purged",
                      "errors": "error"}


def observe_transition(fields: dict) -> None:
    """Count one committed transition (the fields its log line carries, shared/lifecycle.py). Never
    raises: the transition is already committed."""
    try:
        frm, to = fields["from"] or "new", fields["to"]
        TRANSITIONS.labels(frm, to).inc()
        if frm == "running" and fields.get("error_code") and to in ("queued", "failed"):
            FAILURES.labels(fields["error_code"], "retried" if to == "queued" else "failed").inc()
        if fields.get("waited_ms") is not None:
            WAIT.labels("first" if fields["attempt"] == 1 else "retry").observe(fields["waited_ms"] / 1000)
        if frm in ("queued", "running"):  # a job's end, not a tombstone's (expired, erased) after it
            if fields.get("run_ms") is not None:
                RUN.labels(to).observe(fields["run_ms"] / 1000)
            if fields.get("total_ms") is not None:
                DURATION.labels(to).observe(fields["total_ms"] / 1000)
    except Exception:  # a metrics bug must not surface as a failed request or task
        log.exception("counting a job transition failed")


def observe_model(upscaler, seconds: float) -> None:
    """One completed upscale (a model.Upscaler: its name, version and device label the series)."""
    device = str(getattr(upscaler, "device", "unknown"))
    MODEL.labels(upscaler.name, upscaler.version, device).observe(seconds)


def observe_delivery(status: str, seconds: float) -> None:
    """One callback attempt; `status` is the delivery row's new status (pending = to be retried)."""
    outcome = "retrying" if status == "pending" else status
    DELIVERIES.labels(outcome).inc()
    DELIVERY_TIME.labels(outcome).observe(seconds)


def observe_sweep(report) -> None:
    """Count one sweep pass: each count in its SweepReport (worker/sweeper.py) is an action."""
    SWEEPS.labels("errors" if report.errors else "ok").inc()
    for field in dataclasses.fields(report):
        count = getattr(report, field.name)
        if type(count) is int and count:
            SWEEP_ACTIONS.labels(SWEEP_ACTION_NAMES.get(field.name, field.name)).inc(count)


def serve(port: int, addr: str) -> bool:
    """This process's own endpoint (worker, sweeper, deliverer), in a daemon thread; port 0 = none. A
    port that is taken is logged, and the process runs on without metrics rather than not at all."""
    if not port:
        return False
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        log.error("metrics endpoint not started: cannot listen on %s:%d (%s)", addr, port, exc)
        return False
    log.info("metrics at http://%s:%d/metrics", addr, port)
    return True
