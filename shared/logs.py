"""Log set-up for every process: one format, chosen by LOG_FORMAT (text for people, json for log
pipelines), INFO and up; job transitions (logger `jobs`) are INFO lines.

Every line emitted while a job is handled carries its `job_id` (and `partner_id`): the API (per
request), the worker (per task), the sweeper and the deliverer (per job) bind them to a context
variable, and a filter on the handler copies them onto each record. The API, sweeper, deliverer and
Celery worker call `configure()` (the worker from a Celery signal, and any handler Celery adds goes
through `adopt()`: worker/app.py); gunicorn takes `dict_config()` (gunicorn.conf.py). So all of them
write the same lines.
"""
from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar, Token
from datetime import datetime, timezone

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_bound: ContextVar[dict[str, str]] = ContextVar("portraits_log_fields", default={})


def bind(**fields) -> Token:
    """Put these fields (None ones are skipped) on every line logged from here in this thread or task;
    `reset(token)` takes them off again."""
    return _bound.set({**_bound.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def reset(token: Token) -> None:
    _bound.reset(token)


@contextlib.contextmanager
def job_context(job_id, partner_id=None):
    """`job_id` (and `partner_id`) on every line logged inside the block."""
    token = bind(job_id=job_id, partner_id=partner_id)
    try:
        yield
    finally:
        reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record; a field the record already has is left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            record.__dict__.setdefault(key, value)
        return True


class JsonLines(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then job_id, partner_id
    and any `extra` fields. A transition's `extra={"job": {...}}` comes out as top-level fields."""

    def __init__(self):
        super().__init__("{levelname}{name}{message}", style="{", json_ensure_ascii=False,
                         rename_fields={"levelname": "level", "name": "logger"})

    def add_fields(self, log_data, record, message_dict):
        when = datetime.fromtimestamp(record.created, timezone.utc)
        log_data["time"] = when.isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        job = log_data.pop("job", None)
        if isinstance(job, dict):
            log_data.update((k, v) for k, v in job.items() if v is not None)


def formatter(log_format: str) -> logging.Formatter:
    return JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def adopt(handlers, log_format: str) -> None:
    """Give handlers another library set up (Celery's) our format and the job context."""
    for handler in handlers:
        handler.setFormatter(formatter(log_format))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    if log_format == "json":
        logging.captureWarnings(True)  # a library's warning is a JSON line too, not loose text


def configure(log_format: str = "text") -> None:
    """Send INFO and up to stderr in `log_format`, unless the host (gunicorn's JSON config, pytest)
    already set up the root logger."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    adopt([handler], log_format)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def dict_config(log_format: str) -> dict:
    """The same set-up as a logging dictConfig, for gunicorn (its own lines included). Its access log
    stays off, as it is without one."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"job": {"()": ContextFilter}},
        "formatters": {"service": {"()": formatter, "log_format": log_format}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "service", "filters": ["job"]}},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"handlers": [], "propagate": True},
                    "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True}},
    }
