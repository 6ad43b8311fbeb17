"""The partner console at `/`: sign in with an API key, upload a portrait (or pick one face of a group
photo), watch it being restored, compare before and after, download it (as it is, or fitted to a
print), and list the partner's jobs.

Views are thin: a submit is `api.jobs.submit_job` (the same checks and the same exactly-once path as
POST /v1/jobs), a job is `api.jobs._load` (another partner's job is a 404, as in the API), the list is
`api.listing.partner_jobs`.
"""
from __future__ import annotations

import uuid

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for

from api.auth import principal
from api.errors import STATUS
from api.faces import faces_in
from api.jobs import _load as load_job
from api.jobs import submit_job
from api.listing import partner_jobs, status_filter
from api.pages import images, messages, session
from api.pages.view import job_state
from api.uploads import DISPLAY_NAME, allowed_formats, model_scale
from model.print_size import parse_print_size
from shared import lifecycle
from shared.accounts import ADMIN, PARTNER
from shared.errors import ServiceError
from shared.models import JobStatus
from shared.validation import optional_text

bp = Blueprint("console", __name__)
session.guard(bp)
bp.before_request(session.require(PARTNER, public=("console.home", "console.sign_in", "console.sign_out")))
RECENT, PAGE = 5, 20


def upload_rules() -> dict:
    """What the upload form tells people before they send anything (and pages.js checks in advance)."""
    settings = current_app.extensions["portraits"].settings
    formats = [DISPLAY_NAME.get(name, name) for name in allowed_formats(settings)]
    return {"scale": model_scale(settings.model_weights), "max_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_input_pixels, "formats": formats,
            "accept": ",".join(f"image/{n.lower()}" for n in formats),
            "prints": [{"label": label, "inches": parse_print_size(size)}
                       for _, label, size in images.PRINT_SIZES],
            "dpi": images.PRINT_DPI}


def _home(error: dict | None = None, status: int = 200):
    recent, _ = partner_jobs(principal().partner_id, None, RECENT, None)
    return render_template("console/home.html", recent=recent, error=error, rules=upload_rules(),
                           idempotency_key=f"console-{uuid.uuid4()}"), status


@bp.get("/")
def home():
    who = session.signed_in()
    if who is None:
        return render_template("sign_in.html", next=session.safe_next(request.args.get("next")))
    if who.role == ADMIN:
        return redirect(url_for("dashboard.home"))
    return _home()


@bp.post("/sign-in")
def sign_in():
    key = (request.form.get("api_key") or "").strip()
    target = session.safe_next(request.form.get("next"))
    who = session.sign_in(key) if key else None
    if who is None:
        return render_template("sign_in.html", error=messages.BAD_KEY, next=target), 401
    return redirect(target or session.home_url(who), 303)


@bp.post("/sign-out")
def sign_out():
    session.sign_out()
    flash("You are signed out.")
    return redirect(url_for("console.home"), 303)


@bp.post("/jobs")
def submit():
    """The upload form (pages.js sends it with XMLHttpRequest and asks for JSON; without script it is a
    plain form post). A hidden per-form Idempotency-Key makes a double submit one job."""
    try:
        key = optional_text(request.form.get("idempotency_key"), "idempotency_key", 255)
        body, status = submit_job(request.files.get("image"), None, key, crop=request.form.get("crop"))
    except ServiceError as exc:
        if session.wants_json():
            raise  # session.py answers {"error": {code, message, plain}}
        error = {"plain": messages.plain(exc.code, exc.message, **exc.details), "detail": exc.message,
                 "code": exc.code, "reason": exc.details.get("reason")}
        return _home(error, next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500))
    url = url_for("console.job", job_id=body["id"])
    if session.wants_json():
        return jsonify(job=body, url=url), status
    return redirect(url, 303)


@bp.post("/faces")
def faces():
    """The upload form's face picker: the faces in the chosen photo, as POST /v1/faces finds them (JSON).
    pages.js offers each face's crop; the choice travels with the upload as its `crop`."""
    return jsonify(faces_in(request.files.get("image"), request.form.get("aspect")))


@bp.get("/jobs")
def jobs():
    status = status_filter()
    cursor = optional_text(request.args.get("cursor"), "cursor", 200)
    page, next_cursor = partner_jobs(principal().partner_id, status, PAGE, cursor)
    return render_template("console/jobs.html", jobs=page, next_cursor=next_cursor, status=status,
                           statuses=[s.value for s in JobStatus], first_page=cursor is None)


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    job = load_job(job_id)
    fits = (images.print_fits(job.output_width, job.output_height, upload_rules()["scale"])
            if job.status is JobStatus.SUCCEEDED and job.output_width else [])
    return render_template("console/job.html", job=job, state=job_state(job.to_dict()), fits=fits,
                           dpi=images.PRINT_DPI)


@bp.get("/jobs/<job_id>/status")
def job_status(job_id: str):
    """What the job page polls (every 0.5 s while the job may change)."""
    body = load_job(job_id).to_dict()
    return jsonify(job=body, state=job_state(body))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    job = load_job(job_id)
    with current_app.extensions["portraits"].sessions() as db, db.begin():
        changed = lifecycle.request_cancel(db, job.id, actor=f"key:{principal().name}")
    flash(messages.CODES["job_not_cancellable"] if changed is None else
          "Cancel requested: the restoration stops within a second." if changed.status is JobStatus.RUNNING
          else "Cancelled.")
    return redirect(url_for("console.job", job_id=job.id), 303)


@bp.get("/jobs/<job_id>/original")
def original(job_id: str):
    return images.original(load_job(job_id))


@bp.get("/jobs/<job_id>/result.png")
def result(job_id: str):
    return images.result(load_job(job_id), download=request.args.get("download") == "1")


@bp.get("/jobs/<job_id>/print-<size>.png")
def fitted(job_id: str, size: str):
    return images.fitted(load_job(job_id), size)
