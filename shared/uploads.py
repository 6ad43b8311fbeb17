"""Originals stored in S3 whose job row may never have been written.

A submit stores the original *before* inserting its job row (a row must never point at a missing
object). If the API process dies, or Postgres fails, between the two, the object has no row and no
one would ever delete it: a portrait of someone's relative kept forever. So the submit first records
the key here; the transaction that inserts the job deletes that record ("settles" it). A record that
outlives ORPHAN_UPLOAD_GRACE_SECONDS belongs to a submit that never finished: the sweeper deletes the
object (unless a job does point at it) and then the record.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import DateTime, String, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.models import Base, Job


class PendingUpload(Base):
    __tablename__ = "pending_uploads"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


def record(session: Session, key: str) -> None:
    """Before the object is stored: remember it until its job row exists."""
    session.execute(insert(PendingUpload).values(key=key).on_conflict_do_nothing())


def settle(session: Session, key: str) -> None:
    """In the transaction that inserts the job row: the object now has an owner."""
    session.execute(delete(PendingUpload).where(PendingUpload.key == key))


def abandoned(session: Session, grace_seconds: float, limit: int = 200) -> list[tuple[str, bool]]:
    """(key, has a job) for records older than the grace period, oldest first."""
    has_job = select(Job.id).where(Job.input_key == PendingUpload.key).exists()
    return [(key, bool(owned)) for key, owned in session.execute(
        select(PendingUpload.key, has_job)
        .where(PendingUpload.created_at < func.now() - timedelta(seconds=grace_seconds))
        .order_by(PendingUpload.created_at).limit(limit))]


def forget(session: Session, key: str) -> None:
    session.execute(delete(PendingUpload).where(PendingUpload.key == key))
