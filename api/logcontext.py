"""`job_id` and `partner_id` on every log line of a request about a job (shared/logs.py)."""
from __future__ import annotations

import uuid

from flask import Flask, g, request

from shared import logs


def _job_id() -> uuid.UUID | None:
    try:
        return uuid.UUID(str((request.view_args or {}).get("job_id")))
    except ValueError:
        return None  # no job in the route, or not an id: nothing worth a field


def _bind() -> None:
    principal = getattr(g, "principal", None)
    g.log_token = logs.bind(job_id=_job_id(), partner_id=principal.partner_id if principal else None)


def _unbind(exc) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        logs.reset(token)  # a gthread worker's thread serves the next request with clean fields


def install(app: Flask) -> None:
    """Call after auth.register: the partner is known by then. A submit binds its new job's id itself."""
    app.before_request(_bind)
    app.teardown_request(_unbind)
