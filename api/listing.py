"""`GET /v1/jobs`: a partner's own jobs, newest first, in pages joined by an opaque cursor.

Keyset pagination on (created_at, id): a page is "the next `limit` jobs older than the last one shown",
so jobs submitted while a client pages through never shift, repeat or hide the older ones. The cursor
is that last job's (created_at, id) with a checksum: opaque to clients, and a malformed or edited one
is a 400 naming `cursor`, never a 500 or a silently wrong page. It grants nothing: the query is always
limited to the caller's partner.
"""
from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select, tuple_
from sqlalchemy.exc import SQLAlchemyError

from api.auth import principal
from shared.errors import DependencyUnavailable, Forbidden, InvalidRequest
from shared.models import Job, JobStatus
from shared.validation import bounded_int, job_status, optional_text

bp = Blueprint("listing", __name__, url_prefix="/v1/jobs")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
_CURSOR_TAG = b"v1/jobs-cursor:"  # a change of format changes every checksum
_CHECKSUM_BYTES = 6


def encode_cursor(job: Job) -> str:
    payload = f"{job.created_at.isoformat()}|{job.id}".encode()
    digest = hashlib.sha256(_CURSOR_TAG + payload).digest()[:_CHECKSUM_BYTES]
    return base64.urlsafe_b64encode(payload + digest).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) of the last job of the previous page; anything else → 400 on `cursor`."""
    bad = InvalidRequest("cursor is not a cursor this API returned; start again without one", field="cursor")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        payload, digest = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
        if hashlib.sha256(_CURSOR_TAG + payload).digest()[:_CHECKSUM_BYTES] != digest:
            raise bad
        created, _, job_id = payload.decode().partition("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise bad
        return created_at, uuid.UUID(job_id)
    except ValueError:  # base64, UTF-8, ISO 8601 and UUID errors alike
        raise bad from None


def status_filter() -> JobStatus | None:
    return job_status(request.args.get("status"))


@bp.get("")
def list_jobs():
    status = status_filter()
    limit = bounded_int(request.args.get("limit"), "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    cursor = optional_text(request.args.get("cursor"), "cursor", 200)
    page, next_cursor = partner_jobs(principal().partner_id, status, limit, cursor)
    return jsonify(jobs=[job.to_dict() for job in page], next_cursor=next_cursor)


def partner_jobs(partner_id: uuid.UUID | None, status: JobStatus | None, limit: int,
                 cursor: str | None) -> tuple[list[Job], str | None]:
    """One page of a partner's jobs, newest first, and the cursor of the next page (None on the last).
    The console's job list (api/pages/console.py) shows the same pages."""
    if partner_id is None:  # never `partner_id IS NULL`: rows from before partners belong to no one
        raise Forbidden("this key belongs to no partner")
    query = select(Job).where(Job.partner_id == partner_id)
    if status is not None:
        query = query.where(Job.status == status)
    if cursor is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < decode_cursor(cursor))
    # One more than a page: whether there is a next page, without counting.
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    try:
        with current_app.extensions["portraits"].sessions() as session:
            jobs = session.scalars(query).all()
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    page = jobs[:limit]
    return page, encode_cursor(page[-1]) if len(jobs) > limit else None
