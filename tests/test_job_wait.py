"""Long polls, GET /v1/jobs/<id>?wait=N (api/waits.py), in process against the real Postgres: the answer
is held until the job is final, woken by its final move's NOTIFY; bounded waiters; bad values are 400.

The waits here recheck their job only every 120 s and count the wakeups that notifications caused, so
the tests tell a notification from a recheck or a deadline whatever the machine's speed; they wait on
states (a waiter registered, the listener up), never on a clock."""
from __future__ import annotations

import threading
import uuid

import pytest
from prometheus_client import REGISTRY

from api.waits import JobWaits
from shared import lifecycle
from shared.models import Job
from tests.conftest import authed
from tests.polling import poll


def new_job(app, partner, running: bool) -> uuid.UUID:
    sessions = app.extensions["portraits"].sessions
    job = Job(partner_id=partner.id, input_key="k", input_content_type="image/png", input_width=8, input_height=8)
    with sessions() as s, s.begin():
        lifecycle.create(s, job)
    if running:
        with sessions() as s, s.begin():
            assert lifecycle.claim(s, job.id, "test-worker", 60)
    return job.id


def succeed(app, job_id: uuid.UUID) -> None:
    sessions = app.extensions["portraits"].sessions
    with sessions() as s, s.begin():
        job = s.get(Job, job_id)
        assert lifecycle.succeed(s, job, result_key="r", output_width=32, output_height=32)


def slow_rechecks(app, waiters: int = 2) -> JobWaits:
    services = app.extensions["portraits"]
    services.waits.close()
    services.waits = JobWaits(services.settings.database_url, waiters, recheck_seconds=120)
    return services.waits  # closed by the app fixture


def wait_in_thread(client, job_id, seconds: float) -> tuple[threading.Thread, dict]:
    answer = {}

    def run():
        response = client.get(f"/v1/jobs/{job_id}?wait={seconds:g}")
        answer.update(status=response.status_code, body=response.get_json(),
                      outcome=response.headers.get("Portraits-Wait"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer


def until_waiting(waits: JobWaits, job_id, count: int = 1) -> None:
    poll(lambda: {"n": waits.waiting(job_id), "up": waits.listening(0)},
         lambda seen: seen["n"] == count and seen["up"], timeout=60)


def wakeups() -> float:
    """Long polls this process has seen woken by a notification (the API's metric)."""
    return REGISTRY.get_sample_value("portraits_api_long_poll_wakeups_total") or 0.0


def waiting_request(app, keys, running: bool, waiters: int = 2):
    """A job of partner acme's and a long poll (wait=20) waiting on it in a thread, with the listener
    up: (waits, job id, thread, answer, the partner's client, wakeups so far)."""
    key, partner = keys(partner="acme")
    client = authed(app, key)
    waits = slow_rechecks(app, waiters)
    job_id = new_job(app, partner, running=running)
    thread, answer = wait_in_thread(client, job_id, 20)
    until_waiting(waits, job_id)
    return waits, job_id, thread, answer, client, wakeups()


def test_a_long_poll_answers_when_the_job_is_final(app, keys):
    waits, job_id, thread, answer, _, woken = waiting_request(app, keys, running=False)
    with app.extensions["portraits"].sessions() as s, s.begin():  # queued → running: not final, no notification
        assert lifecycle.claim(s, job_id, "test-worker", 60)
    succeed(app, job_id)
    thread.join(60)
    assert answer == {"status": 200, "body": answer["body"], "outcome": "final"}
    assert answer["body"]["status"] == "succeeded" and answer["body"]["id"] == str(job_id)
    assert waits.waiting(job_id) == 0
    # Woken by the success's notification alone, not by a recheck (120 s) or the deadline: had the claim
    # notified too, its notification (committed first, delivered first) would have counted while it waited.
    assert wakeups() - woken == 1


def test_a_long_poll_that_times_out_answers_the_job_as_it_is(app, keys):
    key, partner = keys(partner="acme")
    job_id = new_job(app, partner, running=False)
    response = authed(app, key).get(f"/v1/jobs/{job_id}?wait=0.2")
    assert response.status_code == 200 and response.get_json()["status"] == "queued"
    assert response.headers["Portraits-Wait"] == "timeout"


def test_a_final_job_or_no_wait_is_answered_at_once(app, keys):
    key, partner = keys(partner="acme")
    client = authed(app, key)
    job_id = new_job(app, partner, running=True)
    succeed(app, job_id)
    response = client.get(f"/v1/jobs/{job_id}?wait=20")
    assert response.status_code == 200 and response.get_json()["status"] == "succeeded"
    assert "Portraits-Wait" not in response.headers
    assert "Portraits-Wait" not in client.get(f"/v1/jobs/{new_job(app, partner, False)}?wait=0").headers


def test_waiters_past_the_limit_are_answered_at_once_as_busy(app, keys):
    waits, job_id, thread, answer, client, woken = waiting_request(app, keys, running=True, waiters=1)
    busy = client.get(f"/v1/jobs/{job_id}?wait=20")
    assert busy.status_code == 200 and busy.get_json()["status"] == "running"
    assert busy.headers["Portraits-Wait"] == "busy"
    succeed(app, job_id)
    thread.join(60)
    assert answer["outcome"] == "final" and answer["body"]["status"] == "succeeded" and wakeups() - woken == 1


def test_another_partners_job_is_404_without_waiting(app, keys):
    _, owner = keys(partner="acme")
    other_key, _ = keys(partner="other")
    job_id = new_job(app, owner, running=True)
    response = authed(app, other_key).get(f"/v1/jobs/{job_id}?wait=20")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "job_not_found"
    assert app.extensions["portraits"].waits.waiting(job_id) == 0


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", "20.5", ""])
def test_a_bad_wait_is_400_naming_it(client, value):
    response = client.get(f"/v1/jobs/{uuid.uuid4()}?wait={value}")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", "wait") and "0 to 20" in error["message"]


def test_the_listener_reconnects_after_its_connection_is_killed(app, keys):
    """As after a Postgres restart: the waiting request is woken by a move made after the reconnect."""
    from sqlalchemy import text

    waits, job_id, thread, answer, _, woken = waiting_request(app, keys, running=True)
    engine = app.extensions["portraits"].engine
    listeners = text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                     "AND application_name = 'portraits-api-waits' AND query LIKE 'LISTEN%'")
    with engine.connect() as conn:
        (old,) = conn.execute(listeners).scalars().all()
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old})

    def listener_pids() -> set[int]:
        with engine.connect() as conn:  # a new transaction each time: pg_stat_activity is a snapshot
            return set(conn.execute(listeners).scalars())

    poll(listener_pids, lambda pids: pids and old not in pids, timeout=60)
    poll(lambda: waits.listening(0), bool, timeout=60)
    succeed(app, job_id)
    thread.join(60)
    assert answer["outcome"] == "final" and answer["body"]["status"] == "succeeded" and wakeups() - woken == 1
