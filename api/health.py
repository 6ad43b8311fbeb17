"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: every dependency answers)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _check(fn) -> dict:
    try:
        fn()
    except Exception as exc:  # readiness reports any failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


@bp.get("/readyz")
def readyz():
    services = current_app.extensions["portraits"]

    def postgres():
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def redis():
        with services.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()

    checks = {"postgres": _check(postgres), "redis": _check(redis), "s3": _check(services.storage.ping)}
    ready = all(c["ok"] for c in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), (200 if ready else 503)
