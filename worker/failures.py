"""Maps what went wrong in a job attempt to a `shared.failures.Failure` (code, partner message,
permanent or not). Expected failures are logged as one line; only `internal_error` carries a traceback,
because only it means a bug of ours."""
from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from minio.error import S3Error
from sqlalchemy.exc import SQLAlchemyError
from urllib3.exceptions import HTTPError as Urllib3Error

from model.images import ImageDecodeError, ImageTooLargeError
from shared.failures import Failure, failure
from shared.storage import is_missing_object
from worker.decode_guard import DecoderCrashed, DecoderTimedOut



def classify(exc: BaseException) -> Failure:
    if isinstance(exc, DecoderCrashed):
        return failure("decoder_crashed")
    if isinstance(exc, DecoderTimedOut):
        return failure("decoder_timed_out")
    if isinstance(exc, ImageTooLargeError):
        return failure("image_not_allowed")
    if isinstance(exc, ImageDecodeError):
        return failure("image_undecodable")
    if isinstance(exc, S3Error):
        return failure("original_missing" if is_missing_object(exc) else "storage_unavailable")
    if isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError)):
        return failure("storage_unavailable")
    if isinstance(exc, SQLAlchemyError):
        return failure("database_unavailable")
    if isinstance(exc, SoftTimeLimitExceeded):
        return failure("processing_timeout")
    if isinstance(exc, MemoryError):
        return failure("out_of_memory")
    return failure("internal_error")


def describe(exc: BaseException) -> str:
    """The internal detail for job_events and logs (may name buckets and keys: never shown to partners)."""
    return f"{type(exc).__name__}: {exc}"[:2000]
