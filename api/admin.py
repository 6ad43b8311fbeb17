"""Admin API: find failed jobs, read their history, requeue them (one or in bulk).

Needs an admin API key (api/auth.py); partner keys get 403.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import String, cast, func, or_, select

from shared import lifecycle
from shared.errors import InvalidRequest, JobNotFound, JobNotRequeueable
from shared.models import Job, JobEvent, JobStatus
from shared.validation import bounded_int, job_status, json_object, optional_text

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
MAX_PER_PAGE = 200


def _services():
    return current_app.extensions["portraits"]


def job_filter(args) -> list:
    """WHERE clauses from `status`, `since` (ISO 8601, on created_at) and `q`: an id prefix, an error code,
    or text in the partner-facing error or in any event's internal error detail."""
    clauses = []
    status = job_status(args.get("status"))
    if status is not None:
        clauses.append(Job.status == status)
    since = optional_text(args.get("since"), "since", 64)
    if since:
        try:
            clauses.append(Job.created_at >= datetime.fromisoformat(since))
        except ValueError:
            raise InvalidRequest("since must be an ISO 8601 date or time, e.g. 2026-11-24T00:00:00Z",
                                 field="since") from None
    q = (optional_text(args.get("q"), "q", 200) or "").strip()
    if q:
        like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        in_events = select(JobEvent.id).where(JobEvent.job_id == Job.id, JobEvent.error.ilike(f"%{like}%")).exists()
        clauses.append(or_(cast(Job.id, String).like(f"{like}%"), Job.error.ilike(f"%{like}%"),
                           Job.error_code == q, in_events))
    return clauses


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    return bounded_int(request.args.get(name), name, lo, hi, default)


@bp.get("/jobs")
def list_jobs():
    page = _int_arg("page", 1, 1, 1_000_000)
    per_page = _int_arg("per_page", 50, 1, MAX_PER_PAGE)
    where = job_filter(request.args)
    with _services().sessions() as session:
        total = session.scalar(select(func.count()).select_from(Job).where(*where))
        jobs = session.scalars(select(Job).where(*where).order_by(Job.created_at.desc(), Job.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
    return jsonify(jobs=[j.to_dict() for j in jobs], page=page, per_page=per_page, total=total)


def _job_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r}") from None


@bp.get("/jobs/<job_id>")
def show_job(job_id: str):
    with _services().sessions() as session:
        job = session.get(Job, _job_id(job_id))
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return jsonify(job=job.to_dict(), events=[e.to_dict() for e in lifecycle.events(session, job.id)])


def _body() -> dict:
    """The JSON object sent, {} for an empty body; malformed, too deep or not an object → 400."""
    data = request.get_data(cache=True)
    return json_object(data) if data else {}


def _actor(body: dict) -> str:
    """Who did it: the admin key's name, plus a person when the caller names one."""
    who = f"key:{g.principal.name}"
    person = optional_text(body.get("actor"), "actor", 120)
    return f"{person} ({who})" if person else who


def requeue_ids(job_ids: list[uuid.UUID], actor: str, reason: str) -> dict[uuid.UUID, dict]:
    """Requeue each job that is failed or cancelled, in one transaction; returns the moved jobs as they
    were committed (a worker may claim one a moment later). Published after the commit, never raising
    from then on: if Redis is down, the sweeper publishes the rest."""
    from api.jobs import publish_quietly

    services = _services()
    moved = {}
    with services.sessions() as session, session.begin():
        for job_id in job_ids:
            job = lifecycle.requeue(session, job_id, actor, reason, services.settings.max_attempts)
            if job is not None:
                moved[job_id] = job.to_dict()
    for job_id in moved:
        if not publish_quietly(services, job_id):
            break
    return moved


@bp.post("/jobs/<job_id>/requeue")
def requeue_one(job_id: str):
    body = _body()
    job_uuid = _job_id(job_id)
    with _services().sessions() as session:
        job = session.get(Job, job_uuid)
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    reason = optional_text(body.get("reason"), "reason") or "requeued by an admin"
    moved = requeue_ids([job_uuid], _actor(body), reason)
    if not moved:
        raise JobNotRequeueable(f"job {job_id} is {job.status.value}; only failed or cancelled jobs "
                                "can be requeued", status=job.status.value)
    return jsonify(moved[job_uuid])


@bp.post("/jobs/requeue")
def requeue_bulk():
    body = _body()
    reason = (optional_text(body.get("reason"), "reason") or "").strip()
    if not reason:
        raise InvalidRequest("a bulk requeue needs a 'reason'", field="reason")
    args = {"status": body.get("status") or "failed", "since": body.get("since"), "q": body.get("q")}
    if args["status"] not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
        raise InvalidRequest("status must be 'failed' or 'cancelled'", field="status")
    limit = bounded_int(body.get("limit"), "limit", 1, 100_000, default=1000)
    with _services().sessions() as session:
        ids = list(session.scalars(select(Job.id).where(*job_filter(args)).order_by(Job.created_at)
                                   .limit(limit)))
    moved = requeue_ids(ids, _actor(body), reason)
    return jsonify(requeued=[str(i) for i in moved], count=len(moved), matched=len(ids))
