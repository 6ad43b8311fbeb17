"""How the pages word a job's state, and the template filters they share."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Flask

from api.pages.messages import failure_hint

LABELS = {"queued": "Waiting", "running": "Restoring", "succeeded": "Ready", "failed": "Failed",
          "cancelled": "Cancelled", "expired": "Expired", "erased": "Erased"}
GONE = ("expired", "erased")  # tombstones: the row stays, its original and result are deleted


def label(status) -> str:
    value = getattr(status, "value", status)
    return LABELS.get(value, str(value).capitalize())


def has_images(job) -> bool:
    """Whether the job's original may still be shown (a tombstone's images are deleted)."""
    return getattr(job.status, "value", job.status) not in GONE


def job_state(job: dict) -> dict:
    """A job as the API shows it (Job.to_dict()) → what its page says: a headline, a sentence, the
    progress in percent (None while unknown) and whether it may still change."""
    status, progress = job["status"], job["progress"] or {}
    done, total = progress.get("done") or 0, progress.get("total") or 0
    percent = round(100 * done / total) if total else None
    size = job["input"]
    out = job["output"]
    if status == "queued":
        retry = " after a temporary problem" if job["attempts"] else ""
        detail = f"Waiting for a free worker{retry}. It starts by itself; you can leave this page."
        percent = None
    elif status == "running":
        detail = (f"Restoring the portrait: {done} of {total} parts done ({percent} %)." if total
                  else "Restoring the portrait: starting.")
    elif status == "succeeded":
        percent = 100
        detail = (f"Done. The portrait is now {out['width']} × {out['height']} px "
                  f"(from {size['width']} × {size['height']} px).")
    elif status == "failed":
        why = job["error"] or "unknown error"
        detail = f"It could not be restored: {why}. {failure_hint(job['error_code'])}".strip()
    elif status == "cancelled":
        detail = "Cancelled: it will not be restored."
    else:
        detail = ("Its photos have been deleted (after the retention period, or on request); only this "
                  "record stays.")
    if job["cancel_requested"] and status == "running":
        detail = "Stopping: the cancel was received and the worker stops within a second."
    return {"status": status, "label": label(status), "detail": detail, "percent": percent,
            "busy": status in ("queued", "running")}


def when(value: datetime | None) -> str:
    """A UTC time as pages show it (pages.js turns it into the reader's local time)."""
    return value.astimezone(timezone.utc).strftime("%-d %b %Y, %H:%M UTC") if value else "–"


def register_filters(app: Flask) -> None:
    app.add_template_filter(when, "when")
    app.add_template_filter(label, "label")
    app.add_template_global(has_images, "has_images")
