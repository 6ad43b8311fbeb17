"""One settings object for every process, read from the environment (see README "Settings").

The Flask app, the Celery app, the sweeper and the CLI all take a `Settings`; tests build one with
overrides instead of touching the environment.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "model" / "weights" / "espcn_rb_x4.pt"


class Settings(BaseSettings):
    """Every setting the service reads, with its environment variable name and default."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      protected_namespaces=())

    # Postgres holds the job table: the source of truth for every job.
    database_url: str = Field("postgresql+psycopg://postgres@127.0.0.1:5432/portraits",
                              description="SQLAlchemy URL of the Postgres database.")
    # Redis is only the Celery broker; no job state lives there.
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker URL.")

    # Object storage (MinIO in production, SeaweedFS `weed mini` locally).
    s3_endpoint: str = Field("127.0.0.1:8333", description="host:port of the S3 API.")
    s3_access_key: str = Field("portraits", description="S3 access key.")
    s3_secret_key: str = Field("portraits-secret", description="S3 secret key.")
    s3_bucket: str = Field("portraits", description="Bucket for originals and results.")
    s3_secure: bool = Field(False, description="Use HTTPS to reach S3.")
    s3_region: str = Field("us-east-1", description="Region used to sign requests.")
    s3_public_endpoint: str | None = Field(
        None, description="Scheme-less host:port clients use to download results, when it differs "
                          "from S3_ENDPOINT (e.g. minio:9000 inside compose, a public host outside).")
    s3_public_secure: bool | None = Field(None, description="HTTPS for the public endpoint "
                                                            "(default: S3_SECURE).")
    result_url_ttl_seconds: int = Field(900, ge=1, le=7 * 24 * 3600,
                                        description="Lifetime of a presigned result URL.")

    # Uploads.
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest request body accepted.")
    max_input_pixels: int = Field(40_000_000, ge=1, description="Largest input (width x height).")
    max_output_pixels: int = Field(
        640_000_000, ge=1,
        description="Largest result (width x height after the 4x upscale, i.e. 16x the input pixels, or 16x "
                    "the crop's with a crop); an upload whose result would be larger is refused with 422. "
                    "The default, 16 x MAX_INPUT_PIXELS, lets MAX_INPUT_PIXELS decide; lower it to bound "
                    "worker memory (3-8 bytes per output pixel).")
    allowed_formats: str = Field(
        "JPEG,PNG,WEBP,BMP,TIFF",
        pattern=r"(?i)^\s*(JPEG|PNG|WEBP|BMP|TIFF|GIF)(\s*,\s*(JPEG|PNG|WEBP|BMP|TIFF|GIF))*\s*$",
        description="Comma-separated image formats accepted, any of JPEG, PNG, WEBP, BMP, TIFF, GIF. Judged "
                    "from the file's content, never its name or declared type; JPEG includes MPO (camera "
                    "JPEGs carrying a second picture).")
    animated_images: str = Field(
        "first_frame", pattern="^(first_frame|reject)$",
        description="Animated or multi-frame uploads (APNG, animated WebP/GIF, multi-page TIFF): "
                    "first_frame = upscale the first frame, reject = refuse with 422.")
    decode_timeout_seconds: float = Field(
        60.0, gt=0, description="Workers decode images in a separate decoder process; a decode that takes "
                                "longer than this is killed and its job fails (a decoder crash fails the job "
                                "the same way), never the worker.")

    # Model and inference.
    model_weights: Path = Field(DEFAULT_WEIGHTS, description="state_dict the workers load.")
    model_device: str = Field("auto", pattern="^(auto|cpu|cuda)$",
                              description="auto = CUDA when torch.cuda.is_available(), else CPU.")
    model_tile: int = Field(512, ge=32, description="Input tile edge (px) for tiled inference.")
    torch_threads: int = Field(0, ge=0, description="CPU threads per worker process: the model's, OpenCV's "
                                                    "and the 8-bit path's tail (0 = torch default).")
    model_preload: bool = Field(
        True, description="Load the model as a worker starts and run it once, in the thread that runs the "
                          "jobs' model, so the first job after a start does not wait for either (~1 s on a "
                          "2-core CPU); false = on the first job.")

    # Worker.
    task_soft_time_limit: int = Field(300, ge=1, description="Seconds before a task is asked to stop.")
    task_time_limit: int = Field(360, ge=1, description="Seconds before a task is killed.")
    broker_visibility_timeout: int = Field(
        600, ge=1, description="Seconds before Redis redelivers an unacknowledged task; must exceed "
                               "TASK_TIME_LIMIT so a running task is never delivered twice.")

    worker_overlap: bool = Field(
        True, description="Overlap jobs in a worker: while the model runs one job, the next one's original "
                          "is read and decoded (the job stays queued, its message held unacknowledged) and "
                          "finished results are encoded and stored by two threads. false = one job at a time, "
                          "start to finish (a queued job then never waits behind a busy worker's model).")

    # Lifecycle: retries, leases, sweeper (see README "Jobs that are never lost").
    max_attempts: int = Field(3, ge=1, le=20, description="Claims a job gets before it fails for good.")
    retry_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles per attempt.")
    retry_backoff_max_seconds: float = Field(300.0, ge=0, description="Cap on the retry delay.")
    lease_seconds: int = Field(30, ge=3, description="A running job whose worker has not renewed its "
                                                     "lease for this long is given to another worker.")
    progress_interval_seconds: float = Field(
        0.5, gt=0, le=5, description="A running job writes its progress, renews its lease and checks for a "
                                     "cancel request this often (one UPDATE each): a cancel stops it within "
                                     "this plus one tile.")
    sweep_interval_seconds: float = Field(2.0, gt=0, description="How often the sweeper runs.")
    republish_after_seconds: int = Field(
        60, ge=1, description="A queued job published this long ago is published again when the broker "
                              "queue is empty (its message was lost).")

    orphan_upload_grace_seconds: int = Field(
        600, ge=60, description="An original stored by a submit that never wrote its job row (the API died "
                                "or Postgres failed in between) is deleted by the sweeper after this long.")
    retention_days: int = Field(
        30, ge=1, le=3650,
        description="Originals and results of finished jobs (succeeded, failed, cancelled) are deleted this "
                    "many days after the job finished; the job becomes `expired` (its row, without images, is "
                    "kept). Queued and running jobs never expire.")

    # Partners: rate limits, CORS, idempotency, callbacks.
    rate_limit_submit: str = Field("30/minute", description="Submits per API key (flask-limiter syntax); "
                                   "POST /v1/faces has the same limit, counted apart.")
    rate_limit_default: str = Field("600/minute", description="All other requests per API key.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty = none.")
    poll_wait_max_seconds: float = Field(
        20.0, ge=0, le=60, description="The longest `wait` a poll may ask for (GET /v1/jobs/<id>?wait=N: the "
                                       "answer is held until the job is final or N seconds passed). 0 = no "
                                       "long polls.")
    poll_waiters_per_process: int = Field(
        2, ge=0, description="Long polls one API process holds at a time (each holds one of its threads); "
                             "one more is answered at once, as a plain poll, with `Portraits-Wait: busy`.")
    key_cache_seconds: float = Field(
        10.0, ge=0, le=300, description="An API key verified within this many seconds is trusted from the API "
                                        "process's memory (no database round trip); a revoked key keeps working "
                                        "in a process for at most this long. 0 = check every request.")
    idempotency_ttl_seconds: int = Field(86400, ge=86400, description="How long an Idempotency-Key is kept "
                                                                      "(at least 24 h).")
    idempotency_lock_seconds: int = Field(
        60, ge=5, description="A request holding an Idempotency-Key that has not finished after this long is "
                              "presumed dead (e.g. its API process was killed), and a retry may take the key.")
    allow_private_callbacks: bool = Field(False, description="Allow callback URLs that resolve to private, "
                                                             "loopback or link-local addresses (tests only).")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Per-attempt timeout of a callback POST.")
    webhook_retry_window_seconds: int = Field(25 * 3600, ge=60, description="Callbacks are retried with "
                                                                           "backoff for this long.")
    webhook_backoff_seconds: float = Field(5.0, gt=0, description="First callback retry delay; doubles.")
    webhook_backoff_max_seconds: float = Field(3600.0, gt=0, description="Cap on the callback retry delay.")

    # Operations: logs and metrics (README "Logs" and "Metrics").
    log_format: str = Field(
        "text", pattern="^(text|json)$",
        description="text = readable lines (local use); json = one JSON object per line, with job_id and "
                    "partner_id on every line about a job (docker-compose.yml sets it).")
    metrics_port: int = Field(
        0, ge=0, le=65535,
        description="Port of this process's own Prometheus endpoint (worker, sweeper, webhook deliverer: one "
                    "port each); 0 = none. The API serves GET /metrics on its own port instead. The Procfile "
                    "gives each process honcho's $PORT; docker-compose.yml sets 9100 in each container.")
    metrics_addr: str = Field("127.0.0.1", description="Address the METRICS_PORT endpoint listens on (0.0.0.0 in "
                                                       "containers, so Prometheus can reach it).")

    # Pages for people (api/pages/): the partner console at / and the admin dashboard at /admin.
    secret_key: str | None = Field(
        None, min_length=1, repr=False,
        description="Signs the session cookies of the console and dashboard pages (and their CSRF tokens): 32+ "
                    "random bytes (e.g. `openssl rand -hex 32`), the same in every API process. Unset = the "
                    "pages answer 503 (the /v1 API is unaffected). `make run` writes a random one to "
                    ".local/env once and keeps it.")
    session_cookie_secure: bool = Field(
        False, description="Always mark the session cookie Secure. Without it the cookie is Secure whenever "
                           "the request came over HTTPS (directly, or per X-Forwarded-Proto from a "
                           "TRUSTED_PROXIES proxy).")
    session_lifetime_seconds: int = Field(8 * 3600, ge=60, le=30 * 24 * 3600,
                                          description="A page session ends this long after sign-in.")
    trusted_proxies: int = Field(
        0, ge=0, le=5, description="Reverse proxies in front of the API whose X-Forwarded-For and "
                                   "X-Forwarded-Proto are believed (werkzeug ProxyFix); 0 = none.")
    rate_limit_sign_in: str = Field("10/minute", description="Page sign-in attempts per client address.")

    @model_validator(mode="after")
    def _time_limits_nest(self) -> "Settings":
        # Redis redelivers a task still running past the visibility timeout (a second copy would run).
        if not self.task_soft_time_limit < self.task_time_limit < self.broker_visibility_timeout:
            raise ValueError("need TASK_SOFT_TIME_LIMIT < TASK_TIME_LIMIT < BROKER_VISIBILITY_TIMEOUT")
        # A lease must survive a few missed beats (a database blip) before the sweeper takes the job.
        if self.progress_interval_seconds * 3 > self.lease_seconds:
            raise ValueError("need PROGRESS_INTERVAL_SECONDS x 3 <= LEASE_SECONDS")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
