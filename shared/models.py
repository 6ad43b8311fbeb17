"""The job table: Postgres is the source of truth for every job's state (never Celery's backend)."""
from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Enum, ForeignKey, Identity, Index,
                        Integer, MetaData, String, Text, func, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Tombstones (README "Retention and erasure"): the row stays, its original and result are deleted.
    EXPIRED = "expired"  # kept RETENTION_DAYS after it finished, then deleted by the sweeper
    ERASED = "erased"  # deleted at the partner's request (DELETE /v1/jobs/<id>, or a purge)

    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


def status_enum(name: str = "job_status") -> Enum:
    return Enum(JobStatus, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda e: [m.value for m in e])


# A job's crop is all four columns or none (NULL: the whole photo), never a partial or empty box.
CROP_CHECK = ("(crop_x IS NULL AND crop_y IS NULL AND crop_width IS NULL AND crop_height IS NULL) OR "
              "(crop_x IS NOT NULL AND crop_y IS NOT NULL AND crop_width IS NOT NULL AND crop_height IS NOT NULL"
              " AND crop_x >= 0 AND crop_y >= 0 AND crop_width > 0 AND crop_height > 0)")


class Job(Base):
    __tablename__ = "jobs"
    # A partner's jobs newest first, for GET /v1/jobs and its keyset cursor (api/listing.py).
    __table_args__ = (
        Index("ix_jobs_partner_id_created_at_id", "partner_id", text("created_at DESC"), text("id DESC")),
        # The sweeper's retention and tombstone queries (migration 0006, shared/lifecycle.py).
        Index("ix_jobs_retained_finished_at", "finished_at",
              postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled')")),
        Index("ix_jobs_unpurged_tombstones", "updated_at",
              postgresql_where=text("status IN ('expired', 'erased') AND result_key IS NOT NULL")),
        CheckConstraint(CROP_CHECK, name="crop"),  # migration 0007
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    status: Mapped[JobStatus] = mapped_column(status_enum(), default=JobStatus.QUEUED, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Incremented by each claim and never reset: it is the fencing token. A worker only writes while
    # the row still carries the attempt it claimed, so a stale or duplicate worker writes nothing.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The job may be claimed while attempts < attempts_allowed; an admin requeue raises the allowance.
    attempts_allowed: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the message was last published; NULL = never (the sweeper publishes it).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))
    progress_done: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    # The partner that submitted the job: the only one that can see it (NULL only for rows from before
    # partners existed).
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"), index=True)
    callback_url: Mapped[str | None] = mapped_column(Text)

    input_key: Mapped[str] = mapped_column(String(255))
    input_content_type: Mapped[str] = mapped_column(String(64))
    input_width: Mapped[int] = mapped_column(Integer)
    input_height: Mapped[int] = mapped_column(Integer)
    # The region of the original to upscale (POST /v1/jobs `crop`), in its pixels as shown (after EXIF
    # orientation); all NULL: the whole photo. Checked against the photo at submit (api/uploads.py).
    crop_x: Mapped[int | None] = mapped_column(Integer)
    crop_y: Mapped[int | None] = mapped_column(Integer)
    crop_width: Mapped[int | None] = mapped_column(Integer)
    crop_height: Mapped[int | None] = mapped_column(Integer)
    result_key: Mapped[str | None] = mapped_column(String(255))
    output_width: Mapped[int | None] = mapped_column(Integer)
    output_height: Mapped[int | None] = mapped_column(Integer)
    # What a partner may see of a failure: the message and its stable code (shared/failures.py). The
    # internal detail is in job_events.
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(32))
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))

    @property
    def crop_box(self) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) of the region to upscale, or None for the whole photo."""
        if self.crop_width is None:
            return None
        return (self.crop_x, self.crop_y, self.crop_width, self.crop_height)

    def to_dict(self) -> dict:
        """The job as the API shows it."""
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": str(self.id),
            "status": self.status.value,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at) if self.status is JobStatus.QUEUED else None,
            "progress": ({"done": self.progress_done, "total": self.progress_total}
                         if self.progress_total else None),
            "cancel_requested": self.cancel_requested,
            "input": {"width": self.input_width, "height": self.input_height},
            "crop": (dict(zip(("x", "y", "width", "height"), self.crop_box)) if self.crop_box else None),
            "output": ({"width": self.output_width, "height": self.output_height}
                       if self.output_width is not None else None),
            "error": self.error,
            "error_code": self.error_code,
            "model": ({"name": self.model_name, "version": self.model_version}
                      if self.model_name else None),
        }


class JobEvent(Base):
    """Append-only history: one row per transition (and per admin action), never updated."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    from_status: Mapped[JobStatus | None] = mapped_column(status_enum("from_status"))
    to_status: Mapped[JobStatus] = mapped_column(status_enum("to_status"))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))  # who, for admin actions
    reason: Mapped[str | None] = mapped_column(Text)  # why, for admin actions and automatic moves

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "from": self.from_status.value if self.from_status else None,
                "to": self.to_status.value, "attempt": self.attempt, "worker": self.worker,
                "error": self.error, "actor": self.actor, "reason": self.reason}
