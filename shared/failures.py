"""Why a job attempt failed: a stable code, a message a partner can show, and whether to retry.

Partners see `error_code` and `error` (the message below) on the job and in callbacks; they never see
internal detail (exception text, bucket, object keys, request ids). That detail goes to the job's
`job_events` row (admins) and to the worker's log. `worker/failures.py` maps exceptions to these.

Permanent failures fail the job at once: retrying cannot help. Transient ones are retried with
backoff until MAX_ATTEMPTS, then fail with the same code.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    permanent: bool


CATALOGUE: dict[str, Failure] = {f.code: f for f in (
    Failure("image_undecodable", "the image could not be decoded; it may be damaged: upload it again, "
                                 "e.g. as a JPEG or PNG", True),
    Failure("image_not_allowed", "the image has more pixels than the service accepts", True),
    Failure("decoder_crashed", "the image decoder failed on this file; it is probably malformed", True),
    Failure("decoder_timed_out", "decoding the image took too long; the file is probably malformed", True),
    Failure("original_missing", "the uploaded original is no longer in storage; submit the portrait again",
            True),
    Failure("processing_timeout", "processing took longer than the time limit", False),
    Failure("storage_unavailable", "object storage was unavailable", False),
    Failure("database_unavailable", "the job database was unavailable", False),
    Failure("out_of_memory", "the worker ran out of memory", False),
    Failure("worker_lost", "the worker processing the job stopped (restarted or lost)", False),
    Failure("internal_error", "an unexpected error occurred; it has been logged", False),
)}


def failure(code: str) -> Failure:
    return CATALOGUE[code]
