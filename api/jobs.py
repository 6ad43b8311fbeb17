"""Jobs: submit a portrait, poll its job, cancel it, download the result, erase it. A partner sees only
its own jobs: another partner's job id answers 404, exactly like an unknown one."""
from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace

from flask import Blueprint, current_app, jsonify, redirect, request, url_for
from minio.error import S3Error
from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from urllib3.exceptions import HTTPError as Urllib3Error

from api import db
from api.auth import principal
from api.uploads import read_upload
from model.crop import Crop, parse_crop
from shared import idempotency, lifecycle, logs, retention, uploads
from shared.errors import (DependencyUnavailable, IdempotencyConflict, IdempotencyInProgress, InvalidRequest,
                           JobNotCancellable, JobNotFound, ResultGone, ResultNotReady)
from shared.models import Job, JobStatus
from shared.queue import publish_upscale
from shared.storage import original_key
from shared.webhooks import check_callback_url

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def _services():
    return current_app.extensions["portraits"]


# The caller's job by id: built once (SQLAlchemy then reuses its compiled form without rebuilding it).
_CALLERS_JOB = select(Job.__table__).where(Job.id == bindparam("job_id"),
                                           Job.partner_id == bindparam("partner_id"))


class LoadedJob(SimpleNamespace):
    """A job row as read for an answer: the Job's columns as attributes, and `Job.to_dict` (which only
    reads them). Cheaper than an ORM instance, whose instrumented attributes are only worth it to
    change and save a job, which these callers do through `shared.lifecycle` instead."""

    to_dict = Job.to_dict
    crop_box = Job.crop_box  # a property over columns, like everything to_dict reads


def _load(job_id: str | uuid.UUID) -> LoadedJob:
    """The caller's job, or 404 (also for another partner's job: its existence is not revealed).

    One statement on the request's connection (api/db.py), without an ORM session: a poll is the
    API's most frequent request."""
    try:
        job_uuid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r}") from None
    try:
        row = db.execute(_CALLERS_JOB, {"job_id": job_uuid,
                                        "partner_id": principal().partner_id}).one_or_none()
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    return LoadedJob(**row._mapping)


def _created(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = url_for("jobs.get_job", job_id=body["id"])
    return response


@bp.post("")
def submit():
    body, status = submit_job(request.files.get("image"), request.form.get("callback_url"),
                              request.headers.get("Idempotency-Key"), crop=request.form.get("crop"))
    return _created(body, status)


def read_crop(text: str | None) -> Crop | None:
    """The form field `crop` ("x,y,width,height"); None when absent or blank. Malformed: 400."""
    if text is None or not text.strip():
        return None
    try:
        return parse_crop(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="crop") from None


def submit_job(file, callback_url: str | None, key: str | None, crop: str | None = None) -> tuple[dict, int]:
    """Exactly once from the client's view. Until the job row is committed, any failure answers 503
    and leaves nothing (the Idempotency-Key is released, the original deleted or left to the sweeper);
    once it is committed, the answer is 202 with the job whatever fails afterwards (a publish that
    fails is the sweeper's to redo), so a client never retries a job that exists.

    Returns the job as the API shows it and 202, or 200 for an idempotent replay. The console's upload
    form (api/pages/console.py) calls this too, so both accept and refuse exactly the same uploads.
    `crop` is the form field as sent: the job upscales that region of the photo only."""
    services, me = _services(), principal()
    settings = services.settings
    callback_url = callback_url or me.callback_url
    if callback_url:
        check_callback_url(callback_url, allow_private=settings.allow_private_callbacks)
    region = read_crop(crop)
    upload = read_upload(file, settings, crop=region)

    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", field="Idempotency-Key")
    # The crop is part of the request: the same key with another crop is another request (422). Left out
    # when absent, so the fingerprints of requests without one are what they always were.
    parts = (upload.data, callback_url) + ((str(region),) if region else ())
    fingerprint = idempotency.request_fingerprint(*parts) if key is not None else None
    job = _new_job(upload, callback_url, region)

    # One transaction: hold the key (if any) and note the original we are about to store.
    try:
        with services.sessions() as session, session.begin():
            existing = (idempotency.reserve(session, me.partner_id, key, fingerprint,
                                            settings.idempotency_lock_seconds) if key is not None else None)
            if existing is None:
                uploads.record(session, job.input_key)
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was already used with a different request",
                                      field="Idempotency-Key")
        if existing.response_body is None:
            raise IdempotencyInProgress("a request with this Idempotency-Key is still being processed; "
                                        "retry shortly", field="Idempotency-Key")
        return existing.response_body, 200  # the replay: same job, original body

    logs.bind(job_id=job.id)  # on this request's lines from here on (reset after it: api/logcontext.py)
    try:
        body = _store_and_insert(job, upload, key)
    except BaseException:
        _undo_submit(job, key)
        raise
    publish_quietly(services, job.id)  # never raises: the job is committed, the client must get it
    return body, 202


def _new_job(upload, callback_url: str | None, crop: Crop | None) -> Job:
    services, me = _services(), principal()
    x, y, w, h = crop.box if crop else (None,) * 4
    job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, partner_id=me.partner_id, callback_url=callback_url,
              input_content_type=upload.content_type, input_width=upload.width, input_height=upload.height,
              crop_x=x, crop_y=y, crop_width=w, crop_height=h,
              attempts=0, attempts_allowed=services.settings.max_attempts, cancel_requested=False,
              model_name=services.model["name"], model_version=services.model["version"])
    job.input_key = original_key(me.partner_id, job.id)
    return job


def _store_and_insert(job: Job, upload, key: str | None) -> dict:
    """Store the original, then insert the row, settle the pending upload and complete the key in one
    transaction: the job exists with its idempotent answer recorded, or none of it does."""
    services, me = _services(), principal()
    # The original first: a row must never point at a missing object.
    try:
        services.storage.put(job.input_key, upload.data, upload.content_type)
    except Exception as exc:
        log.warning("storing the original of job %s failed (%s)", job.id, type(exc).__name__)
        raise DependencyUnavailable("object storage is unavailable; try again shortly") from exc
    try:
        with services.sessions() as session, session.begin():
            lifecycle.create(session, job, actor=f"key:{me.name}")
            uploads.settle(session, job.input_key)
            body = job.to_dict()  # created_at and the other server defaults came back with the INSERT
            if key is not None:
                idempotency.complete(session, me.partner_id, key, job.id, 202, body)
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    return body


def _undo_submit(job: Job, key: str | None) -> None:
    """After a failed submit: free the key and delete the original, unless the row was committed after
    all (a COMMIT whose answer was lost). Best effort and never raising: what cannot be undone now (the
    database is down) is undone later: an unfinished key can be taken over after
    IDEMPOTENCY_LOCK_SECONDS, and the sweeper deletes the original after ORPHAN_UPLOAD_GRACE_SECONDS."""
    services, me = _services(), principal()
    try:
        with services.sessions() as session, session.begin():
            if session.get(Job, job.id) is not None:
                return
            if key is not None:
                idempotency.release(session, me.partner_id, key)
        services.storage.delete(job.input_key)
        with services.sessions() as session, session.begin():
            uploads.forget(session, job.input_key)
    except Exception as exc:
        log.warning("could not undo the failed submit of job %s now (%s); the sweeper will",
                    job.id, type(exc).__name__)


def publish_quietly(services, job_id: uuid.UUID) -> bool:
    """Publish a committed job (never before: the task must find its row); False if the broker is down.
    Never raises: if Redis or the bookkeeping fails, the job stays queued with enqueued_at NULL and the
    sweeper publishes it (twice at worst: harmless, the claim is conditional)."""
    try:
        publish_upscale(services.celery, job_id)
    except Exception as exc:
        log.warning("publishing job %s failed (%s); the sweeper will publish it", job_id, type(exc).__name__)
        return False
    try:
        with services.sessions() as session, session.begin():
            lifecycle.mark_published(session, [job_id])
    except Exception as exc:
        log.warning("recording that job %s was published failed (%s)", job_id, type(exc).__name__)
    return True


@bp.get("/<job_id>")
def get_job(job_id: str):
    """The job; with `?wait=N`, held until it is final or N seconds passed (api/waits.py)."""
    seconds = _wait_seconds(request.args.get("wait"))
    job = _load(job_id)
    if not seconds or job.status.is_terminal():
        return jsonify(job.to_dict())
    db.release()  # no pooled connection held while waiting

    def read() -> LoadedJob:
        try:
            return _load(job.id)
        finally:
            db.release()

    job, outcome = _services().waits.wait(job.id, read, lambda j: j.status.is_terminal(), seconds)
    response = jsonify(job.to_dict())
    response.headers["Portraits-Wait"] = outcome
    return response


def _wait_seconds(text: str | None) -> float:
    """The query parameter `wait`: 0 when absent; a number of seconds up to POLL_WAIT_MAX_SECONDS, else 400."""
    if text is None:
        return 0.0
    limit = _services().settings.poll_wait_max_seconds
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= limit:  # also NaN
        raise InvalidRequest(f"wait must be a number of seconds from 0 to {limit:g}", field="wait")
    return seconds


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


@bp.delete("/<job_id>")
def erase(job_id: str):
    """Erase the job's original and result now; the row stays as an `erased` tombstone (no image, only
    dimensions, timestamps and history). A queued or running job is stopped. Idempotent: erasing again
    answers the same tombstone (and deletes again). No callback is sent."""
    job = _load(job_id)
    services = _services()
    try:
        job, _ = retention.erase_job(services.sessions, services.storage, job.id,
                                     actor=f"key:{principal().name}", reason="erased at the partner's request")
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the job database is unavailable; try again shortly") from exc
    except (S3Error, Urllib3Error, OSError) as exc:  # the row is erased; its objects are not all deleted yet
        log.warning("job %s is erased but deleting its objects failed (%s)", job.id, type(exc).__name__)
        raise DependencyUnavailable("the job is erased but object storage is unavailable, so its images may "
                                    "not be deleted yet; send the DELETE again shortly") from exc
    return jsonify(job.to_dict())


@bp.get("/<job_id>/result")
def get_result(job_id: str):
    job = _load(job_id)
    if job.status in lifecycle.TOMBSTONES:
        why = ("it was erased" if job.status is JobStatus.ERASED else
               f"it was deleted {_services().settings.retention_days} days after the job finished")
        raise ResultGone(f"job {job.id} has no result any more: {why}", status=job.status.value)
    if job.status is not JobStatus.SUCCEEDED or not job.result_key:
        hint = {"failed": "the job failed; see its error",
                "cancelled": "the job was cancelled"}.get(job.status.value, "poll the job until it succeeded")
        raise ResultNotReady(f"job {job.id} has no result: it is {job.status.value}; {hint}",
                             status=job.status.value)
    url = _services().storage.presigned_get(job.result_key, download_name=f"portrait-{job.id}.png")
    return redirect(url, code=302)
