"""The callback deliverer: `python -m worker.webhooks` (Procfile `webhooks`, compose `webhooks`).

Takes due rows from the `webhook_deliveries` outbox (a short lease on each, so several deliverers can
run), POSTs the JSON event signed per Standard Webhooks with the partner's secret, and records the
outcome: 2xx → delivered; anything else → retried with exponential backoff until the retry window
(WEBHOOK_RETRY_WINDOW_SECONDS, default 25 h) has passed, then failed. A callback never touches the
job: the job's state was committed before its event was written.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import requests
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from standardwebhooks.webhooks import Webhook

from shared.accounts import Partner
from shared import logs, metrics
from shared.db import make_engine, make_session_factory
from shared.errors import InvalidRequest
from shared.settings import Settings, get_settings
from shared.webhooks import DELIVERED, FAILED, PENDING, WebhookDelivery, body_of, check_callback_url

log = logging.getLogger("worker.webhooks")


def take_due(session, settings: Settings, limit: int) -> list[tuple[WebhookDelivery, str]]:
    """Lease up to `limit` due deliveries (next_attempt_at pushed past the request timeout)."""
    due = (select(WebhookDelivery.id).where(WebhookDelivery.status == PENDING,
                                            WebhookDelivery.next_attempt_at <= func.now())
           .order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    lease = timedelta(seconds=settings.webhook_timeout_seconds + 30)
    rows = session.scalars(update(WebhookDelivery).where(WebhookDelivery.id.in_(due))
                           .values(next_attempt_at=func.now() + lease).returning(WebhookDelivery)).all()
    secrets = dict(session.execute(select(Partner.id, Partner.webhook_secret).where(
        Partner.id.in_({r.partner_id for r in rows}))).all()) if rows else {}
    return [(r, secrets[r.partner_id]) for r in rows]


def signed_headers(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": "memorial-portraits-webhooks/1",
            "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body)}


def attempt(delivery: WebhookDelivery, secret: str, settings: Settings, http: requests.Session) -> tuple[bool, int | None, str | None, bool]:
    """POST once. Returns (delivered, status code, error, permanent)."""
    try:
        check_callback_url(delivery.url, allow_private=settings.allow_private_callbacks)
    except InvalidRequest as exc:
        return False, None, f"refused: {exc.message}", True
    body = body_of(delivery)
    try:
        response = http.post(delivery.url, data=body.encode(), timeout=settings.webhook_timeout_seconds,
                             headers=signed_headers(secret, delivery.msg_id, body, datetime.now(timezone.utc)),
                             allow_redirects=False)  # a redirect could point at an internal host
    except requests.RequestException as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500], False
    if 200 <= response.status_code < 300:
        return True, response.status_code, None, False
    return False, response.status_code, f"HTTP {response.status_code}", False


def record(session, delivery: WebhookDelivery, settings: Settings, delivered: bool, status_code: int | None,
           error: str | None, permanent: bool, rng=random) -> str:
    attempts = delivery.attempts + 1
    values = dict(attempts=attempts, last_status_code=status_code, last_error=error)
    if delivered:
        values.update(status=DELIVERED, delivered_at=func.now())
    else:
        age = (datetime.now(timezone.utc) - delivery.created_at).total_seconds()
        delay = min(settings.webhook_backoff_max_seconds, settings.webhook_backoff_seconds * 2 ** (attempts - 1))
        delay *= rng.uniform(0.5, 1.0)
        if permanent or age + delay > settings.webhook_retry_window_seconds:
            values.update(status=FAILED)
        else:
            values.update(next_attempt_at=func.now() + timedelta(seconds=delay))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))
    return values.get("status", PENDING)


def deliver_due(sessions, settings: Settings, http: requests.Session | None = None, limit: int = 20) -> dict[str, int]:
    """One pass; returns counts by outcome."""
    http = http or requests.Session()
    with sessions() as session, session.begin():
        batch = take_due(session, settings, limit)
    outcome = {DELIVERED: 0, PENDING: 0, FAILED: 0}
    for delivery, secret in batch:
        with logs.job_context(delivery.job_id, delivery.partner_id):
            started = time.perf_counter()
            result = attempt(delivery, secret, settings, http)
            seconds = time.perf_counter() - started
            with sessions() as session, session.begin():
                status = record(session, delivery, settings, *result)
            outcome[status] += 1
            metrics.observe_delivery(status, seconds)
            if result[0]:
                log.info("callback %s for job %s delivered (HTTP %s, attempt %d)", delivery.msg_id,
                         delivery.job_id, result[1], delivery.attempts + 1)
            else:
                log.warning("callback %s for job %s: %s (attempt %d, now %s)", delivery.msg_id,
                            delivery.job_id, result[2], delivery.attempts + 1, status)
    return outcome


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_format)
    metrics.serve(settings.metrics_port, settings.metrics_addr)
    sessions = make_session_factory(make_engine(settings.database_url, "portraits-webhooks"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    http = requests.Session()
    log.info("webhook deliverer running")
    while not stop.is_set():
        try:
            outcome = deliver_due(sessions, settings, http)
            busy = any(outcome.values())
        except OperationalError as exc:  # Postgres down: expected, no traceback; try again, never exit
            log.warning("delivery pass failed: database unavailable (%s)", str(exc).splitlines()[0][:200])
            busy = False
        except Exception:
            log.exception("delivery pass failed")
            busy = False
        stop.wait(0.2 if busy else 1.0)


if __name__ == "__main__":
    main()
