"""API-key authentication: `Authorization: Bearer <key>` on every /v1 route.

Partner keys may use the partner routes and see only their partner's jobs; admin keys may use
/v1/admin only. Missing or invalid → 401 with WWW-Authenticate; wrong role → 403.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app, g, request
from sqlalchemy import func, or_, update
from sqlalchemy.exc import SQLAlchemyError

from shared.accounts import ADMIN, PARTNER, ApiKey, find_active_key
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
    key = bearer_key()
    sessions = current_app.extensions["portraits"].sessions
    try:
        with sessions() as session, session.begin():
            row = find_active_key(session, key)
            if row is not None:
                session.execute(update(ApiKey).where(
                    ApiKey.id == row.id, or_(ApiKey.last_used_at.is_(None),
                                             ApiKey.last_used_at < func.now() - LAST_USED_RESOLUTION))
                    .values(last_used_at=func.now()))
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the key database is unavailable; try again shortly") from exc
    if row is None:
        raise Unauthorized("the API key is not valid or has been revoked")
    wants_admin = request.path.startswith("/v1/admin")
    if wants_admin and row.role != ADMIN:
        raise Forbidden("this endpoint needs an admin key")
    if not wants_admin and row.role != PARTNER:
        raise Forbidden("admin keys cannot act for a partner; use the /v1/admin endpoints")
    g.principal = Principal(row.id, row.name, row.role, row.partner_id, row.callback_url)


def principal() -> Principal:
    return g.principal


def register(app: Flask) -> None:
    app.before_request(authenticate)
