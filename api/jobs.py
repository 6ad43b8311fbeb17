"""Jobs: submit a portrait, poll its job, cancel it, download the result. A partner sees only its own
jobs: another partner's job id answers 404, exactly like an unknown one."""
from __future__ import annotations

import logging
import uuid

from flask import Blueprint, current_app, jsonify, redirect, request, url_for
from sqlalchemy.exc import SQLAlchemyError

from api.auth import principal
from api.uploads import read_upload
from shared import idempotency, lifecycle
from shared.errors import (DependencyUnavailable, IdempotencyConflict, IdempotencyInProgress, InvalidRequest,
                           JobNotCancellable, JobNotFound, ResultNotReady)
from shared.models import Job, JobStatus
from shared.queue import publish_upscale
from shared.storage import original_key
from shared.webhooks import check_callback_url

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def _services():
    return current_app.extensions["portraits"]


def _load(job_id: str | uuid.UUID) -> Job:
    """The caller's job, or 404 (also for another partner's job: its existence is not revealed)."""
    try:
        job_uuid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r}") from None
    try:
        with _services().sessions() as session:
            job = session.get(Job, job_uuid)
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    if job is None or job.partner_id != principal().partner_id:
        raise JobNotFound(f"no job with id {job_id!r}")
    return job


def _created(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = url_for("jobs.get_job", job_id=body["id"])
    return response


@bp.post("")
def submit():
    services, me = _services(), principal()
    settings = services.settings
    callback_url = request.form.get("callback_url") or me.callback_url
    if callback_url:
        check_callback_url(callback_url, allow_private=settings.allow_private_callbacks)
    upload = read_upload(request.files.get("image"), settings)

    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", field="Idempotency-Key")
        fingerprint = idempotency.request_fingerprint(upload.data, callback_url)
        with services.sessions() as session, session.begin():
            existing = idempotency.reserve(session, me.partner_id, key, fingerprint)
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise IdempotencyConflict("this Idempotency-Key was already used with a different request",
                                          field="Idempotency-Key")
            if existing.response_body is None:
                raise IdempotencyInProgress("a request with this Idempotency-Key is still being processed; "
                                            "retry shortly", field="Idempotency-Key")
            return _created(existing.response_body, 200)  # the replay: same job, original body
    try:
        body = _create_job(upload, callback_url)
    except BaseException:
        if key is not None:
            with services.sessions() as session, session.begin():
                idempotency.release(session, me.partner_id, key)
        raise
    if key is not None:
        with services.sessions() as session, session.begin():
            idempotency.complete(session, me.partner_id, key, uuid.UUID(body["id"]), 202, body)
    return _created(body, 202)


def _create_job(upload, callback_url: str | None) -> dict:
    services, me = _services(), principal()
    settings = services.settings
    job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, partner_id=me.partner_id, callback_url=callback_url,
              input_content_type=upload.content_type, input_width=upload.width, input_height=upload.height,
              attempts=0, attempts_allowed=settings.max_attempts, cancel_requested=False,
              model_name=services.model["name"], model_version=services.model["version"])
    job.input_key = original_key(me.partner_id, job.id)

    # Store the original first: a row must never point at a missing object. If the row cannot be
    # written, the object is removed again, so a failed submit leaves nothing behind.
    try:
        services.storage.put(job.input_key, upload.data, upload.content_type)
    except Exception as exc:
        log.exception("storing the original failed")
        raise DependencyUnavailable("object storage is unavailable; try again shortly") from exc
    try:
        with services.sessions() as session, session.begin():
            lifecycle.create(session, job, actor=f"key:{me.name}")
    except SQLAlchemyError as exc:
        _delete_quietly(job.input_key)
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc

    # Publish only after the commit, so the task always finds its row. If Redis is down the job is
    # still accepted: it stays queued with enqueued_at NULL and the sweeper publishes it later.
    try:
        publish_upscale(services.celery, job.id)
        with services.sessions() as session, session.begin():
            lifecycle.mark_published(session, [job.id])
    except Exception:
        log.warning("publishing job %s failed; the sweeper will publish it", job.id, exc_info=True)
    return _load(job.id).to_dict()


@bp.get("/<job_id>")
def get_job(job_id: str):
    return jsonify(_load(job_id).to_dict())


@bp.post("/<job_id>/cancel")
def cancel(job_id: str):
    """Cancel a queued job now, or ask a running job's worker to stop (it notices within seconds)."""
    job = _load(job_id)
    with _services().sessions() as session, session.begin():
        changed = lifecycle.request_cancel(session, job.id, actor=f"key:{principal().name}")
    if changed is None:
        raise JobNotCancellable(f"job {job.id} is {job.status.value} and can no longer be cancelled",
                                status=job.status.value)
    return jsonify(_load(job.id).to_dict()), 202 if changed.status is JobStatus.RUNNING else 200


@bp.get("/<job_id>/result")
def get_result(job_id: str):
    job = _load(job_id)
    if job.status is not JobStatus.SUCCEEDED or not job.result_key:
        hint = {"failed": "the job failed; see its error",
                "cancelled": "the job was cancelled"}.get(job.status.value, "poll the job until it succeeded")
        raise ResultNotReady(f"job {job.id} has no result: it is {job.status.value}; {hint}",
                             status=job.status.value)
    url = _services().storage.presigned_get(job.result_key, download_name=f"portrait-{job.id}.png")
    return redirect(url, code=302)


def _delete_quietly(key: str) -> None:
    try:
        _services().storage.delete(key)
    except Exception:
        log.exception("could not remove %s after a failed submit", key)
