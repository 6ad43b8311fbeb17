"""API-key authentication: `Authorization: Bearer <key>` on every /v1 route.

Partner keys may use the partner routes and see only their partner's jobs; admin keys may use
/v1/admin only. Missing or invalid → 401 with WWW-Authenticate; wrong role → 403.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app, g, request
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from api import db
from shared.accounts import ADMIN, PARTNER, ApiKey, hash_key
from shared.errors import DependencyUnavailable, Forbidden, Unauthorized

LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute per key


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    name: str
    role: str
    partner_id: uuid.UUID | None
    callback_url: str | None


def bearer_key() -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return key.strip()


def authenticate() -> None:
    if request.method == "OPTIONS" or not request.path.startswith("/v1/"):
        return  # health checks, the OpenAPI document and CORS preflights are public
    services = current_app.extensions["portraits"]
    key_hash = hash_key(bearer_key())
    cached = services.keys.get(key_hash)
    try:
        if cached is None:
            me = _verify(services, key_hash)
        else:
            me = cached.principal
            if services.keys.last_used_due(cached):
                _touch(me.key_id)
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the key database is unavailable; try again shortly") from exc
    wants_admin = request.path.startswith("/v1/admin")
    if wants_admin and me.role != ADMIN:
        raise Forbidden("this endpoint needs an admin key")
    if not wants_admin and me.role != PARTNER:
        raise Forbidden("admin keys cannot act for a partner; use the /v1/admin endpoints")
    g.principal = me


def _verify(services, key_hash: str) -> Principal:
    """The key from the database (401 if unknown or revoked), then cached; last_used_at written if stale.
    Both statements run on the request's connection (api/db.py), which then reads the job too."""
    since_used = func.extract("epoch", func.now() - ApiKey.last_used_at)
    found = db.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.partner_id, ApiKey.callback_url, since_used)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))).one_or_none()
    if found is None:
        raise Unauthorized("the API key is not valid or has been revoked")
    me, age = Principal(*found[:5]), (float(found[5]) if found[5] is not None else None)
    if age is None or age >= LAST_USED_RESOLUTION.total_seconds():
        _touch(me.key_id)
        age = 0.0
    services.keys.put(key_hash, me, age)
    return me


def _touch(key_id: uuid.UUID) -> None:
    """One conditional UPDATE (its own transaction: the request's connection is in autocommit); it may
    run twice (`db.execute`): the second finds last_used_at fresh and changes nothing."""
    db.execute(update(ApiKey).where(
        ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None),
                                 ApiKey.last_used_at < func.now() - LAST_USED_RESOLUTION))
        .values(last_used_at=func.now()))


def principal() -> Principal:
    return g.principal


def register(app: Flask) -> None:
    app.before_request(authenticate)
