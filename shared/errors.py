"""Domain errors. They carry a machine-readable `code` and a human message; only `api/errors.py`
turns them into HTTP status codes and JSON bodies, so workers and the CLI can raise them freely."""
from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a caller."""

    code = "error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidUpload(ServiceError):
    """The request does not carry a usable upload (missing field, empty file)."""

    code = "invalid_upload"


class InvalidImage(ServiceError):
    """The upload is not an image we can decode, or breaks a limit (pixels, format)."""

    code = "invalid_image"


class InvalidCrop(ServiceError):
    """A well-formed crop that does not fit the photo: empty, outside it, or a result over the limit."""

    code = "invalid_crop"


class JobNotFound(ServiceError):
    code = "job_not_found"


class ResultNotReady(ServiceError):
    """The job exists but has no result (yet, or ever: it failed)."""

    code = "result_not_ready"


class ResultGone(ServiceError):
    """The job's result and original were deleted for good: erased at the partner's request, or expired."""

    code = "result_gone"


class IdempotencyConflict(ServiceError):
    """An Idempotency-Key reused with a different request."""

    code = "idempotency_conflict"


class IdempotencyInProgress(ServiceError):
    code = "idempotency_in_progress"


class JobNotCancellable(ServiceError):
    code = "job_not_cancellable"


class JobNotRequeueable(ServiceError):
    code = "job_not_requeueable"


class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


class InvalidRequest(ServiceError):
    """A query parameter or JSON body field is malformed."""

    code = "invalid_request"


class DependencyUnavailable(ServiceError):
    """A backing service (Postgres, Redis, S3) could not be reached."""

    code = "dependency_unavailable"
