"""Callbacks from the running deliverer: signed per Standard Webhooks with the partner's secret (as the
operator CLI printed it), one per terminal state, retried with the same webhook-id when the partner's
endpoint fails."""
from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from tests.imagegen import encode, synthetic_portrait
from tests.receiver import Receiver

pytestmark = pytest.mark.system


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_succeeded_job_calls_back_signed(partner, receiver):
    response = partner.client.submit(encode(synthetic_portrait(48)), data={"callback_url": receiver.url})
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    (headers, body), = receiver.wait_for(1)
    event = Webhook(partner.secret).verify(body, headers)  # raises unless signed with the partner's secret
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job_id and event["data"]["output"] == {"width": 192, "height": 192}
    time.sleep(1.5)  # the deliverer polls every second: a duplicate would have arrived by now
    assert len(receiver.requests) == 1


def test_cancelled_job_calls_back_and_a_failing_endpoint_gets_retries(partner, receiver):
    receiver.statuses = [500, 503]  # the partner's endpoint fails twice, then accepts
    response = partner.client.submit(encode(synthetic_portrait(48)), data={"callback_url": receiver.url})
    job_id = response.json()["id"]
    partner.client.post(f"/v1/jobs/{job_id}/cancel")
    final = partner.client.wait(job_id)[0]["status"]
    received = receiver.wait_for(3)
    assert {h["webhook-id"] for h, _ in received} == {received[0][0]["webhook-id"]}  # one event, retried
    event = Webhook(partner.secret).verify(received[-1][1], received[-1][0])
    assert event["type"] == f"job.{final}" and event["data"]["id"] == job_id
    assert json.loads(received[0][1]) == json.loads(received[-1][1])
