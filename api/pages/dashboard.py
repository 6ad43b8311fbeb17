"""The admin dashboard at `/admin` (admin keys only; a partner session gets 403): job counts by status
over the last hour, day and week, failed jobs, search, a job's history, requeue (one or many, with a
reason) and cancel.

The search is `api.admin.job_filter` and requeueing is `api.admin.requeue_ids`, as in /v1/admin; a
cancel is `shared.lifecycle.request_cancel`.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from api.admin import job_filter, requeue_ids
from api.auth import principal
from api.pages import images, session
from api.pages.view import job_state
from shared import lifecycle
from shared.accounts import ADMIN, Partner
from shared.errors import InvalidRequest, JobNotFound
from shared.models import Job, JobStatus
from shared.validation import bounded_int, optional_text

bp = Blueprint("dashboard", __name__, url_prefix="/admin")
session.guard(bp)
bp.before_request(session.require(ADMIN))
WINDOWS = {"hour": ("Last hour", timedelta(hours=1)), "day": ("Last 24 hours", timedelta(days=1)),
           "week": ("Last 7 days", timedelta(days=7))}
RECENT_FAILED, PER_PAGE = 20, 50


def _db():
    return current_app.extensions["portraits"].sessions()


def _with_partners(query) -> list[tuple[Job, str | None]]:
    """(job, partner name) for each job the query selects."""
    with _db() as db:
        return [(job, name) for job, name in db.execute(
            query.add_columns(Partner.name).outerjoin(Partner, Partner.id == Job.partner_id)).all()]


def status_counts() -> dict:
    """{status: {window: jobs submitted in that window now in that status}} and the totals per window."""
    columns = [func.count().filter(Job.created_at >= func.now() - delta).label(name)
               for name, (_, delta) in WINDOWS.items()]
    with _db() as db:
        week = Job.created_at >= func.now() - WINDOWS["week"][1]
        rows = db.execute(select(Job.status, *columns).where(week).group_by(Job.status)).all()
        now = dict(db.execute(select(Job.status, func.count()).where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])).group_by(Job.status)).all())
    counts = {status.value: dict.fromkeys(WINDOWS, 0) for status in JobStatus}
    for row in rows:
        counts[row.status.value] = {name: getattr(row, name) for name in WINDOWS}
    totals = {name: sum(c[name] for c in counts.values()) for name in WINDOWS}
    return {"by_status": counts, "totals": totals, "queued_now": now.get(JobStatus.QUEUED, 0),
            "running_now": now.get(JobStatus.RUNNING, 0)}


@bp.get("")
def home():
    failed = _with_partners(select(Job).where(Job.status == JobStatus.FAILED)
                            .order_by(Job.created_at.desc(), Job.id).limit(RECENT_FAILED + 1))
    return render_template("dashboard/home.html", counts=status_counts(), windows=WINDOWS,
                           statuses=[s.value for s in JobStatus],
                           failed=failed[:RECENT_FAILED], more_failed=len(failed) > RECENT_FAILED)


def _search_args() -> dict:
    """The search form → api.admin.job_filter's arguments (its `since` from the chosen window)."""
    window = optional_text(request.args.get("window"), "window", 8)
    if window and window not in WINDOWS:
        raise InvalidRequest(f"window must be one of {list(WINDOWS)}", field="window")
    since = (datetime.now(timezone.utc) - WINDOWS[window][1]).isoformat() if window else None
    return {"status": request.args.get("status"), "q": request.args.get("q"), "since": since}


@bp.get("/jobs")
def jobs():
    where = job_filter(_search_args())
    page = bounded_int(request.args.get("page"), "page", 1, 1_000_000, 1)
    with _db() as db:
        total = db.scalar(select(func.count()).select_from(Job).where(*where))
    found = _with_partners(select(Job).where(*where).order_by(Job.created_at.desc(), Job.id)
                           .offset((page - 1) * PER_PAGE).limit(PER_PAGE))
    return render_template("dashboard/jobs.html", jobs=found, total=total, page=page, per_page=PER_PAGE,
                           statuses=[s.value for s in JobStatus], windows=WINDOWS, args=request.args)


def _job(job_id: str) -> tuple[Job, str | None]:
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r}") from None
    found = _with_partners(select(Job).where(Job.id == job_uuid))
    if not found:
        raise JobNotFound(f"no job with id {job_id!r}")
    return found[0]


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    job, partner_name = _job(job_id)
    with _db() as db:
        events = lifecycle.events(db, job.id)
    return render_template("dashboard/job.html", job=job, partner_name=partner_name, events=events,
                           state=job_state(job.to_dict()))


def _actor() -> str:
    return f"key:{principal().name}"


def _reason() -> str | None:
    return (optional_text(request.form.get("reason"), "reason") or "").strip() or None


def _back(default: str):
    return redirect(session.safe_next(request.form.get("next")) or default, 303)


@bp.post("/jobs/<job_id>/requeue")
def requeue(job_id: str):
    job, _ = _job(job_id)
    reason = _reason()
    if reason is None:
        flash("Give a reason for the requeue: it is kept in the job's history.", "error")
    elif requeue_ids([job.id], _actor(), reason):
        flash("Requeued: the job is waiting for a worker again.")
    else:
        flash(f"Not requeued: the job is {job.status.value}; only failed or cancelled jobs can be.", "error")
    return redirect(url_for("dashboard.job", job_id=job.id), 303)


@bp.post("/requeue")
def requeue_many():
    ids, reason = [], _reason()
    for value in request.form.getlist("job_id"):
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise InvalidRequest("job_id must be job ids", field="job_id") from None
    if not ids:
        flash("Select the jobs to requeue first.", "error")
    elif reason is None:
        flash("Give a reason for the requeue: it is kept in each job's history.", "error")
    else:
        moved = requeue_ids(ids, _actor(), reason)
        skipped = len(ids) - len(moved)
        flash(f"Requeued {len(moved)} of {len(ids)} selected jobs"
              + (f"; {skipped} were no longer failed or cancelled." if skipped else "."))
    return _back(url_for("dashboard.home"))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    job, _ = _job(job_id)
    with _db() as db, db.begin():
        changed = lifecycle.request_cancel(db, job.id, actor=_actor())
    if changed is None:
        flash(f"Not cancelled: the job is already {job.status.value}.", "error")
    else:
        flash("Cancel requested: the worker stops within a second." if changed.status is JobStatus.RUNNING
              else "Cancelled.")
    return redirect(url_for("dashboard.job", job_id=job.id), 303)


@bp.get("/jobs/<job_id>/original")
def original(job_id: str):
    return images.original(_job(job_id)[0])


@bp.get("/jobs/<job_id>/result.png")
def result(job_id: str):
    return images.result(_job(job_id)[0], download=request.args.get("download") == "1")
