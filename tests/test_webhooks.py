"""Signed callbacks: outbox rows on terminal states, Standard Webhooks signatures, retries, refusals."""
from __future__ import annotations

import json
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared import lifecycle
from shared.errors import InvalidRequest
from shared.failures import failure
from shared.webhooks import WebhookDelivery, check_callback_url
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.receiver import Receiver
from worker.webhooks import deliver_due


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def finish_job(app, job_id: str, permanent_error: str | None = None) -> None:
    """Drive the job to a terminal state through the real state machine (no worker needed)."""
    with app.extensions["portraits"].sessions() as s, s.begin():
        job = lifecycle.claim(s, uuid.UUID(job_id), "w", 30)
        if permanent_error:
            lifecycle.fail_or_retry(s, job, failure("image_undecodable"), detail=permanent_error, backoff=0)
        else:
            lifecycle.succeed(s, job, result_key="k", output_width=4, output_height=4)


def deliveries(app) -> list[WebhookDelivery]:
    with app.extensions["portraits"].sessions() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_terminal_state_sends_a_verifiable_signed_event(app, keys, receiver, settings):
    key, partner = keys(partner="acme", callback_url=receiver.url)  # the key's default callback
    client = authed(app, key)
    job_id = post_image(client, encode(synthetic_portrait(32))).get_json()["id"]
    assert deliver_due(app.extensions["portraits"].sessions, settings) == {"delivered": 0, "pending": 0, "failed": 0}
    finish_job(app, job_id)
    outcome = deliver_due(app.extensions["portraits"].sessions, settings)
    assert outcome["delivered"] == 1
    headers, body = receiver.requests[0]
    event = Webhook(partner.webhook_secret).verify(body, headers)  # raises unless the signature is right
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["status"] == "succeeded"
    with pytest.raises(WebhookVerificationError):  # tampered body
        Webhook(partner.webhook_secret).verify(body.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):  # another partner's secret
        Webhook(keys(partner="globex")[1].webhook_secret).verify(body, headers)
    stale = dict(headers, **{"webhook-timestamp": str(int((datetime.now(timezone.utc) - timedelta(hours=1)).timestamp()))})
    with pytest.raises(WebhookVerificationError):  # a replay an hour later
        Webhook(partner.webhook_secret).verify(body, stale)
    assert deliveries(app)[0].status == "delivered"


def test_failures_are_retried_with_backoff_under_one_message_id(app, keys, receiver, settings):
    key, partner = keys(partner="acme")
    client = authed(app, key)
    job_id = post_image(client, encode(synthetic_portrait(32)), form={"callback_url": receiver.url}).get_json()["id"]
    finish_job(app, job_id, permanent_error="not an image")
    receiver.statuses = [500, 503]
    sessions = app.extensions["portraits"].sessions
    for expected_attempts in (1, 2):
        assert deliver_due(sessions, settings)["pending"] == 1
        (row,) = deliveries(app)
        assert row.attempts == expected_attempts and row.last_status_code in (500, 503)
        assert deliver_due(sessions, settings) == {"delivered": 0, "pending": 0, "failed": 0}  # not due yet
        with sessions() as s, s.begin():
            s.execute(update(WebhookDelivery).values(next_attempt_at=text("now()")))
    assert deliver_due(sessions, settings)["delivered"] == 1
    ids = {h["webhook-id"] for h, _ in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1  # the same message, so partners can dedupe
    assert json.loads(receiver.requests[-1][1])["type"] == "job.failed"


def test_retries_stop_after_the_window_and_never_touch_the_job(app, keys, receiver, settings):
    key, _ = keys(partner="acme", callback_url=receiver.url)
    job_id = post_image(authed(app, key), encode(synthetic_portrait(32))).get_json()["id"]
    finish_job(app, job_id)
    sessions = app.extensions["portraits"].sessions
    with sessions() as s, s.begin():  # as if it had been failing for a day already
        s.execute(update(WebhookDelivery).values(created_at=text("now() - interval '25 hours'")))
    receiver.statuses = [500]
    assert deliver_due(sessions, settings.model_copy(update={"webhook_retry_window_seconds": 24 * 3600}))["failed"] == 1
    assert authed(app, key).get(f"/v1/jobs/{job_id}").get_json()["status"] == "succeeded"


def test_delivery_refuses_a_url_that_now_resolves_privately(app, keys, receiver, settings):
    key, _ = keys(partner="acme", callback_url=receiver.url)
    job_id = post_image(authed(app, key), encode(synthetic_portrait(32))).get_json()["id"]
    finish_job(app, job_id)
    outcome = deliver_due(app.extensions["portraits"].sessions, settings.model_copy(update={"allow_private_callbacks": False}))
    assert outcome["failed"] == 1 and receiver.requests == []
    assert "non-public" in deliveries(app)[0].last_error


def test_no_callback_url_no_delivery(client, app):
    job_id = post_image(client, encode(synthetic_portrait(32))).get_json()["id"]
    finish_job(app, job_id)
    assert deliveries(app) == []


def fake_resolver(*addresses):
    return lambda host, port, type=0: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def test_callback_url_policy():
    ok = check_callback_url("https://memorial.example/hook", allow_private=False,
                            resolve=fake_resolver("93.184.216.34"))
    assert ok == "https://memorial.example/hook"
    for addresses in (("10.1.2.3",), ("93.184.216.34", "127.0.0.1"), ("169.254.169.254",), ("100.64.0.1",)):
        with pytest.raises(InvalidRequest):
            check_callback_url("https://rebinding.example/hook", allow_private=False, resolve=fake_resolver(*addresses))
    assert check_callback_url("http://127.0.0.1:5000/x", allow_private=True)
