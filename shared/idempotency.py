"""Idempotency keys with Stripe's semantics: the same key and the same request give back the first
response; the same key with a different request is refused (422). Kept IDEMPOTENCY_TTL_SECONDS
(at least 24 h); the sweeper deletes older ones."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, Integer, String, and_, delete, func, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.models import Base


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"),
                                                  primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column()
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict | None] = mapped_column(JSONB)  # NULL while the first request runs
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


def request_fingerprint(*parts: bytes | str | None) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else (part or b"")
        digest.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no ambiguous joins
    return digest.hexdigest()


def reserve(session: Session, partner_id: uuid.UUID, key: str, request_hash: str,
            lock_seconds: float) -> IdempotencyKey | None:
    """Claim the key for this request. None if we got it; else the existing row (a replay, or a request
    still in flight). A reservation left unfinished for `lock_seconds` belongs to a request that died
    without releasing it (its process was killed, or the database went away before the release): this
    request takes it over, so a key is never locked for its whole TTL."""
    stmt = insert(IdempotencyKey).values(partner_id=partner_id, key=key, request_hash=request_hash)
    abandoned = and_(IdempotencyKey.response_body.is_(None),
                     IdempotencyKey.created_at < func.now() - timedelta(seconds=lock_seconds))
    inserted = session.execute(
        stmt.on_conflict_do_update(index_elements=[IdempotencyKey.partner_id, IdempotencyKey.key],
                                   set_={"request_hash": request_hash, "created_at": func.now()},
                                   where=abandoned)
        .returning(IdempotencyKey.key)).scalar_one_or_none()
    if inserted is not None:
        return None
    return session.get(IdempotencyKey, (partner_id, key), populate_existing=True)


def complete(session: Session, partner_id: uuid.UUID, key: str, job_id: uuid.UUID, status: int,
             body: dict) -> None:
    row = session.get(IdempotencyKey, (partner_id, key))
    row.job_id, row.response_status, row.response_body = job_id, status, body


def release(session: Session, partner_id: uuid.UUID, key: str) -> None:
    """The first request failed: free the key so the partner can retry with it."""
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.partner_id == partner_id,
                                                 IdempotencyKey.key == key,
                                                 IdempotencyKey.response_body.is_(None)))


def purge_expired(session: Session, ttl_seconds: int) -> int:
    result = session.execute(delete(IdempotencyKey).where(
        IdempotencyKey.created_at < func.now() - timedelta(seconds=ttl_seconds)))
    return result.rowcount


def find(session: Session, partner_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(IdempotencyKey.partner_id == partner_id,
                                                       IdempotencyKey.key == key))
