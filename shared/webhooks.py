"""Signed callbacks (Standard Webhooks) through an outbox.

A terminal transition of a job with a callback URL inserts a `webhook_deliveries` row in the same
transaction (shared/lifecycle.py), so no event is lost and none blocks or fails the job. The deliverer
process (`python -m worker.webhooks`) POSTs due rows, signed with the partner's secret, and retries
with exponential backoff for WEBHOOK_RETRY_WINDOW_SECONDS (default 25 h) before giving up.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.errors import InvalidRequest
from shared.models import Base, Job
from shared.validation import optional_text

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "next_attempt_at",
                            postgresql_where=text("status = 'pending'")),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)  # webhook-id: stable across retries
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=PENDING, server_default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def wants_callback(job: Job) -> bool:
    """Whether the job's end is delivered to a callback URL (a delivery row written with it)."""
    return bool(job.callback_url) and job.partner_id is not None


def enqueue_event(session: Session, job: Job) -> None:
    """Called inside a terminal transition's transaction."""
    if not wants_callback(job):
        return
    event_type = f"job.{job.status.value}"
    payload = {"type": event_type, "timestamp": datetime.now().astimezone().isoformat(),
               "data": job.to_dict()}
    session.add(WebhookDelivery(msg_id=f"msg_{uuid.uuid4().hex}", job_id=job.id, partner_id=job.partner_id,
                                url=job.callback_url, event_type=event_type, payload=payload))


def body_of(delivery: WebhookDelivery) -> str:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)


# ------------------------------------------------------------------------------------------- URL policy
def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_callback_url(url: str, *, allow_private: bool, resolve=None) -> str:
    """Refuse anything but http(s) URLs whose host resolves only to public addresses (no loopback,
    private, link-local or metadata targets) unless `allow_private`. Checked at submit and again at
    delivery, since DNS can change in between."""
    url = optional_text(url, "callback_url", 2000)
    if url is None:
        raise InvalidRequest("callback_url must not be empty", field="callback_url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequest(f"callback_url is not a valid URL ({exc})", field="callback_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("callback_url must be an absolute http(s) URL", field="callback_url")
    if parts.username or parts.password:
        raise InvalidRequest("callback_url must not carry credentials", field="callback_url")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequest("callback_url has an invalid port", field="callback_url") from None
    if allow_private:
        return url
    try:
        infos = (resolve or socket.getaddrinfo)(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                                type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequest(f"callback_url host {parts.hostname!r} does not resolve", field="callback_url") from None
    addresses = {info[4][0] for info in infos}
    blocked = sorted(a for a in addresses if not is_public_address(a))
    if blocked:
        raise InvalidRequest(f"callback_url resolves to a non-public address ({', '.join(blocked)}); "
                             "private, loopback and link-local targets are refused", field="callback_url")
    return url
