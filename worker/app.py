"""The worker's Celery app: `celery -A worker.app worker --pool solo`.

One solo worker process per GPU (or per CPU box): the model is loaded once, in the process that runs
tasks, and CUDA is never initialised in a parent that forks.
"""
from __future__ import annotations

import logging

from celery import signals

from shared import logs, metrics
from shared.queue import make_celery
from shared.settings import get_settings

app = make_celery(get_settings(), main="worker")
# Celery's own "Task … succeeded in 0.4s: None" follows every task, even an attempt that failed and was
# requeued (the task handled it): misleading. The job's transition line (shared/lifecycle.py) says
# what happened; Celery's warnings and errors still come through.
logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
# Likewise its "Task … received" line before every task: the claim's transition line says it, once.
logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


@signals.celeryd_init.connect
def _service_logging(instance, **_) -> None:
    """The worker writes the lines every other process writes (LOG_FORMAT, job_id on a job's): our
    handler goes on first, so Celery keeps it, and even its start-up warnings come out that way."""
    log_format = get_settings().log_format
    logs.configure(log_format)
    if log_format == "json":
        instance.quiet = True  # the start-up banner is many lines of plain text on stdout


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _service_log_format(logger, **_) -> None:
    """Any handler Celery did add (its task logger's) gets the same format and the job context."""
    logs.adopt(logger.handlers, get_settings().log_format)


@signals.celeryd_after_setup.connect
def _serve_metrics(**_) -> None:
    """Once, in the process that runs the tasks (the solo pool's only one), after logging is set up."""
    settings = get_settings()
    metrics.serve(settings.metrics_port, settings.metrics_addr)


@signals.worker_ready.connect
def _start_decoder_and_model(**_) -> None:
    """The image decoder process (worker/decode_guard.py) starts now, not on the first job, and so does
    the model (MODEL_PRELOAD): loaded and run once by the overlap's model thread while the worker
    takes its first messages (worker/runtime.py `start_model`)."""
    from worker.decode_guard import start_decoder
    from worker.runtime import runtime

    start_decoder()
    if get_settings().model_preload:
        runtime().start_model()


@signals.worker_shutdown.connect
def _finish_held_jobs(**_) -> None:
    """A warm shutdown: the jobs already acknowledged and in the model or being stored are finished
    (their leases would bring them back after LEASE_SECONDS anyway, but later, and redone)."""
    from worker.runtime import drain

    if not drain(timeout=get_settings().task_time_limit):
        logging.getLogger(__name__).warning("shutting down with jobs unfinished; their leases will expire")


import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
