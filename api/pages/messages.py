"""The API's error codes, upload refusal reasons and job states, in plain words for the pages.

The API's own message stays available on the page as the technical detail; these say what happened
and what to do, for a person who is not a developer.
"""
from __future__ import annotations

SIGNED_OUT = "Your session has ended. Please sign in again."
WRONG_ROLE = {
    "partner": "This page is for partners. You are signed in with an admin key: the dashboard is at "
               "/admin.",
    "admin": "This page is for the service's operators and needs an admin key. Your partner key cannot "
             "open it.",
}
BAD_KEY = "That key is not valid, or it has been revoked. Check that you pasted the whole key (it starts " \
          "with pk_ or ak_), or ask for a new one."

# The `reason` of a refused upload (422, README "Uploads: what is accepted").
UPLOAD_REASONS = {
    "unsupported_format": "This file is not a kind of picture the service accepts. Please send the photo as "
                          "{accepted}.",
    "unreadable": "This file could not be read as a picture. It may be damaged or only partly downloaded: "
                  "save the photo again and upload the new copy.",
    "damaged": "Part of this picture is damaged and cannot be decoded. Please try another copy of the photo, "
               "for example saved again as JPEG or PNG.",
    "too_many_pixels": "This picture is too large for the service ({limit_mp} megapixels at most). "
                       "Please send a smaller copy.",
    "result_too_large": "This picture is too large to enlarge 4 times: the result would pass the service's "
                        "limit of {limit_mp} megapixels. Please send a smaller copy.",
    "animated": "This is an animation or a file with several pages. Please send a single still photo.",
}

# Error codes (shared/errors.py, and Werkzeug's for HTTP errors), keyed as the API reports them.
CODES = {
    "invalid_upload": "Please choose a photo to upload. (The file was missing or empty.)",
    "request_entity_too_large": "This file is larger than {limit_mb} MB, the most the service accepts. "
                                "Please send a smaller copy of the photo.",
    "too_many_requests": "Too many attempts in a short time. Please wait a minute, then try again.",
    "dependency_unavailable": "The service is briefly unavailable. Nothing was saved; please try again in a "
                              "moment.",
    "idempotency_in_progress": "This photo is already being received. Please wait a moment.",
    "idempotency_conflict": "This form was already used for another photo. Please reload the page and try "
                            "again.",
    "job_not_found": "There is no such job in your account.",
    "job_not_cancellable": "This job has already finished, so it can no longer be cancelled.",
    "job_not_requeueable": "Only failed or cancelled jobs can be requeued.",
    "result_not_ready": "This job has no restored portrait.",
    "result_gone": "This portrait's photos have been deleted (after the retention period, or on request).",
    "unauthorized": SIGNED_OUT,
    "forbidden": "You cannot open this page with the key you signed in with.",
    "invalid_request": "Something in the form was not right: {message}.",
    "invalid_crop": "The part of the photo chosen to restore does not fit the photo: {message}. Please "
                    "choose the face again.",
    "bad_request": "This form has expired or was not sent from this site. Please reload the page and try "
                   "again.",
    "not_found": "This page does not exist.",
    "method_not_allowed": "This page cannot be used that way.",
}
NO_SECRET = "Sign-in is not set up on this server: it has no SECRET_KEY setting. Ask its operator to set one."

# What a failed job's error_code means for the family's photo, and what to do next.
# (The messages of image_undecodable and original_missing already say what to do.)
FAILURE_HINTS = {
    "image_undecodable": "", "original_missing": "",
    "image_not_allowed": "Please upload a smaller copy of the photo.",
    "decoder_crashed": "Please upload another copy of the photo.",
    "decoder_timed_out": "Please upload another copy of the photo.",
}
RETRY_LATER = "This was a problem on our side, not with the photo. Please try again later."


def plain(code: str, message: str = "", **details) -> str:
    """Plain words for an error code (and, for a refused upload, its reason)."""
    if code == "dependency_unavailable" and details.get("reason") == "no_secret":
        return NO_SECRET
    if code == "invalid_image" and details.get("reason") in UPLOAD_REASONS:
        template = UPLOAD_REASONS[details["reason"]]
    else:
        template = CODES.get(code, "Something went wrong: {message}.")
    limit = details.get("limit")
    return template.format(
        message=message.rstrip("."), accepted=_accepted(details.get("accepted")),
        limit_mp=f"{limit / 1e6:.0f}" if isinstance(limit, (int, float)) else "a few hundred",
        limit_mb=f"{limit / 1024 / 1024:.0f}" if isinstance(limit, (int, float)) else "20")


def _accepted(names: str | None) -> str:
    """'JPEG, PNG, WebP' → 'JPEG, PNG or WebP'."""
    parts = [n.strip() for n in (names or "JPEG, PNG, WebP, BMP, TIFF").split(",") if n.strip()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def failure_hint(error_code: str | None) -> str:
    return FAILURE_HINTS.get(error_code or "", RETRY_LATER)
