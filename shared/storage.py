"""Object storage for originals and results, through the `minio` SDK (MinIO or any S3 server).

Keys are derived from the partner and job ids only (never from uploaded file names), so a retry
overwrites the same object instead of adding another. The bucket stays private: results leave only
through short-lived presigned URLs.
"""
from __future__ import annotations

import io
import uuid
from datetime import timedelta

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.settings import Settings

RESULT_CONTENT_TYPE = "image/png"
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})


def is_missing_object(exc: BaseException) -> bool:
    """Whether an exception is S3's "no such object" (as opposed to storage being unavailable)."""
    return isinstance(exc, S3Error) and exc.code in MISSING_OBJECT_CODES


def job_prefix(partner_id: uuid.UUID | None, job_id: uuid.UUID) -> str:
    return f"partners/{partner_id or 'none'}/jobs/{job_id}/"


def original_key(partner_id: uuid.UUID | None, job_id: uuid.UUID) -> str:
    return job_prefix(partner_id, job_id) + "original"


def result_key(partner_id: uuid.UUID | None, job_id: uuid.UUID) -> str:
    return job_prefix(partner_id, job_id) + "result.png"


def _client(endpoint: str, secure: bool, settings: Settings) -> Minio:
    # Short timeouts and few retries: a dead S3 must fail a request quickly, not hang a worker thread.
    # maxsize: connections kept per host for the threads that share this client (API threads, the
    # worker's reading and storing threads); urllib3's default of 1 closed one after each concurrent use.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=30), maxsize=8,
                               retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                     status_forcelist=(500, 502, 503, 504)))
    return Minio(endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                 secure=secure, region=settings.s3_region, http_client=http)


class Storage:
    """The service's bucket: put/get bytes, delete, and presign downloads."""

    def __init__(self, settings: Settings):
        self.bucket = settings.s3_bucket
        self.ttl = timedelta(seconds=settings.result_url_ttl_seconds)
        self.client = _client(settings.s3_endpoint, settings.s3_secure, settings)
        # Presigning is offline (the region is given, so the SDK asks nothing), but the URL must name
        # the host that *clients* reach, which differs from the internal one inside compose.
        public = settings.s3_public_endpoint or settings.s3_endpoint
        public_secure = settings.s3_secure if settings.s3_public_secure is None else settings.s3_public_secure
        self.public_client = _client(public, public_secure, settings)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if is_missing_object(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def presigned_get(self, key: str, download_name: str | None = None) -> str:
        headers = ({"response-content-disposition": f'attachment; filename="{download_name}"'}
                   if download_name else None)
        return self.public_client.presigned_get_object(self.bucket, key, expires=self.ttl,
                                                       response_headers=headers)

    def ping(self) -> None:
        """Raise unless the bucket is reachable (readiness check)."""
        if not self.client.bucket_exists(self.bucket):
            raise RuntimeError(f"bucket {self.bucket!r} does not exist")
