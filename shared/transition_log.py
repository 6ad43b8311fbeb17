"""Every committed job transition, logged once and counted once; a rolled-back one never happened.

`shared/lifecycle.py` calls `note` for each move it makes in a session; the lines are written (and the
transition metrics observed, shared/metrics.py) only when that session commits.
"""
from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from shared import metrics
from shared.models import Job, JobStatus

log = logging.getLogger("jobs")
_TRANSITIONS = "portraits.transitions"  # session.info key: transitions to log once committed


def note(session: Session, job: Job, frm: JobStatus | None, to: JobStatus, event_fields: dict) -> None:
    """Log and count the transition once its transaction commits (below)."""
    session.info.setdefault(_TRANSITIONS, []).append(_log_fields(job, frm, to, event_fields))


def _log_fields(job: Job, frm: JobStatus | None, to: JobStatus, event_fields: dict) -> dict:
    def ms(start, end):
        return round((end - start).total_seconds() * 1000) if start and end else None

    fields = {"job_id": str(job.id), "partner_id": str(job.partner_id) if job.partner_id else None,
              "from": frm.value if frm else None, "to": to.value, "attempt": job.attempts,
              "worker": event_fields.get("worker"), "actor": event_fields.get("actor"),
              "error_code": job.error_code if to in (JobStatus.QUEUED, JobStatus.FAILED) else None,
              "reason": event_fields.get("reason")}
    if to.is_terminal():
        fields["run_ms"] = ms(job.started_at, job.finished_at) if frm is JobStatus.RUNNING else None
        fields["total_ms"] = ms(job.created_at, job.finished_at)
    elif to is JobStatus.RUNNING:
        fields["waited_ms"] = ms(job.created_at, job.started_at)
    return fields


@event.listens_for(Session, "after_commit")
def _log_committed_transitions(session: Session) -> None:
    """One line per job transition, written only once it is committed (a rolled-back move never
    happened), and counted in the same place (shared/metrics.py). `extra` carries the same fields: JSON
    logs show them as fields (shared/logs.py)."""
    for fields in session.info.pop(_TRANSITIONS, []):
        shown = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k not in ("job_id", "from", "to"))
        log.info("job %s: %s → %s %s", fields["job_id"], fields["from"] or "new", fields["to"], shown,
                 extra={"job": fields})
        metrics.observe_transition(fields)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_transitions(session: Session) -> None:
    session.info.pop(_TRANSITIONS, None)
