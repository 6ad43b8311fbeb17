"""Partners and API keys. A key is random, shown once, stored only as its SHA-256 (keys carry 256 bits
of entropy, so a fast hash is enough — there is nothing to brute-force), and revocable.

Roles: a `partner` key acts for one partner and sees only its jobs; an `admin` key has no partner and
may use /v1/admin only.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.models import Base

PARTNER, ADMIN = "partner", "admin"
KEY_PREFIX = {PARTNER: "pk_", ADMIN: "ak_"}


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # Signs callbacks (Standard Webhooks, HMAC-SHA256). Kept in clear: signing needs it.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"),
                                                         index=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120))
    key_prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    callback_url: Mapped[str | None] = mapped_column(Text)  # default for jobs submitted with this key
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {"id": str(self.id), "partner_id": str(self.partner_id) if self.partner_id else None,
                "role": self.role, "name": self.name, "prefix": self.key_prefix,
                "callback_url": self.callback_url, "created_at": iso(self.created_at),
                "last_used_at": iso(self.last_used_at), "revoked_at": iso(self.revoked_at)}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_partner(session: Session, name: str) -> Partner:
    partner = Partner(id=uuid.uuid4(), name=name, webhook_secret=new_webhook_secret())
    session.add(partner)
    session.flush()
    return partner


def create_key(session: Session, *, role: str, name: str, partner: Partner | None = None,
               callback_url: str | None = None) -> tuple[ApiKey, str]:
    """A new key; returns the row and the key itself, which is never stored and cannot be shown again."""
    if role not in KEY_PREFIX:
        raise ValueError(f"role must be one of {sorted(KEY_PREFIX)}")
    if (role == PARTNER) != (partner is not None):
        raise ValueError("a partner key needs a partner; an admin key must not have one")
    key = KEY_PREFIX[role] + secrets.token_urlsafe(32)
    row = ApiKey(id=uuid.uuid4(), partner_id=partner.id if partner else None, role=role, name=name,
                 key_prefix=key[:10], key_hash=hash_key(key), callback_url=callback_url)
    session.add(row)
    session.flush()
    return row, key


def find_active_key(session: Session, key: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
