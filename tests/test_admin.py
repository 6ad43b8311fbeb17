"""Admin API, partner cancel and the operator CLI, against real Postgres, Redis and S3."""
from __future__ import annotations

import threading
import uuid

import pytest
import redis

from shared import lifecycle
from shared.failures import failure
from shared.models import Job, JobStatus
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait

@pytest.fixture
def admin_app(app):
    return app


@pytest.fixture
def admin(app, keys):
    """A client carrying a partner key by default; AUTH headers switch a request to the admin key."""
    global AUTH
    AUTH = {"Authorization": f"Bearer {keys(admin=True)[0]}"}
    return authed(app, keys(partner="acme")[0])


def submit(client) -> str:
    response = post_image(client, encode(synthetic_portrait(32)))
    assert response.status_code == 202
    return response.get_json()["id"]


def fail(app, job_id: str, error: str = "model exploded") -> None:
    sessions = app.extensions["portraits"].sessions
    with sessions() as s, s.begin():
        job = lifecycle.claim(s, uuid.UUID(job_id), "w", 30)
        lifecycle.fail_or_retry(s, job, failure("image_undecodable"), detail=error, backoff=0)


def queue_length(app) -> int:
    return redis.Redis.from_url(app.extensions["portraits"].settings.redis_url).llen("celery")


def test_admin_routes_need_an_admin_key(admin, app):
    anonymous = app.test_client()
    response = anonymous.get("/v1/admin/jobs")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    response = anonymous.get("/v1/admin/jobs", headers={"Authorization": "Bearer ak_not-a-real-key"})
    assert response.status_code == 401
    partner = admin.get("/v1/admin/jobs")  # the partner key
    assert partner.status_code == 403 and partner.get_json()["error"]["code"] == "forbidden"
    assert admin.get("/v1/admin/jobs", headers=AUTH).status_code == 200
    # ...and an admin key cannot act as a partner.
    assert admin.get(f"/v1/jobs/{uuid.uuid4()}", headers=AUTH).status_code == 403


def test_list_failed_with_filters_and_paging(admin, admin_app):
    ids = [submit(admin) for _ in range(5)]
    for job_id in ids[:3]:
        fail(admin_app, job_id, f"model exploded on {job_id[:4]}")
    body = admin.get("/v1/admin/jobs?status=failed&per_page=2", headers=AUTH).get_json()
    assert body["total"] == 3 and len(body["jobs"]) == 2 and body["page"] == 1
    page2 = admin.get("/v1/admin/jobs?status=failed&per_page=2&page=2", headers=AUTH).get_json()
    assert {j["id"] for j in body["jobs"] + page2["jobs"]} == set(ids[:3])
    by_q = admin.get(f"/v1/admin/jobs?q={ids[0][:8]}", headers=AUTH).get_json()
    assert [j["id"] for j in by_q["jobs"]] == [ids[0]]
    assert admin.get("/v1/admin/jobs?since=2999-01-01T00:00:00%2B00:00", headers=AUTH).get_json()["total"] == 0
    for bad in ("status=nope", "since=yesterday", "per_page=0", "page=x"):
        response = admin.get(f"/v1/admin/jobs?{bad}", headers=AUTH)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "invalid_request"


def test_requeue_one_and_its_history(admin, admin_app):
    job_id = submit(admin)
    assert admin.post(f"/v1/admin/jobs/{job_id}/requeue", headers=AUTH).status_code == 409  # queued
    fail(admin_app, job_id)
    before = queue_length(admin_app)
    response = admin.post(f"/v1/admin/jobs/{job_id}/requeue", headers=AUTH,
                          json={"reason": "model fixed", "actor": "alice"})
    assert response.status_code == 200 and response.get_json()["status"] == "queued"
    assert queue_length(admin_app) == before + 1
    events = admin.get(f"/v1/admin/jobs/{job_id}", headers=AUTH).get_json()["events"]
    assert [(e["from"], e["to"]) for e in events] == [
        (None, "queued"), ("queued", "running"), ("running", "failed"), ("failed", "queued")]
    assert events[-1]["actor"].startswith("alice (key:") and events[-1]["reason"] == "model fixed"
    assert admin.post(f"/v1/admin/jobs/{uuid.uuid4()}/requeue", headers=AUTH).status_code == 404


def test_concurrent_requeues_enqueue_once(admin, admin_app):
    job_id = submit(admin)
    fail(admin_app, job_id)
    before = queue_length(admin_app)
    codes, barrier = [], threading.Barrier(5)

    def racer():
        client = admin_app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
        barrier.wait()
        codes.append(client.post(f"/v1/admin/jobs/{job_id}/requeue", json={"reason": "x"})
                     .status_code)

    threads = [threading.Thread(target=racer) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409, 409]
    assert queue_length(admin_app) == before + 1


def test_bulk_requeue_needs_a_reason_and_uses_the_filter(admin, admin_app):
    ids = [submit(admin) for _ in range(4)]
    for job_id in ids[:2]:
        fail(admin_app, job_id, "cuda out of memory")
    fail(admin_app, ids[2], "something else")
    assert admin.post("/v1/admin/jobs/requeue", headers=AUTH, json={}).status_code == 400
    body = admin.post("/v1/admin/jobs/requeue", headers=AUTH,
                      json={"q": "out of memory", "reason": "bigger GPU"}).get_json()
    assert body["count"] == 2 and set(body["requeued"]) == set(ids[:2])
    with admin_app.extensions["portraits"].sessions() as s:
        assert s.get(Job, uuid.UUID(ids[2])).status is JobStatus.FAILED


def test_partner_cancel(admin, admin_app):
    job_id = submit(admin)
    response = admin.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    again = admin.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "job_not_cancellable"
    assert admin.get(f"/v1/jobs/{job_id}/result").status_code == 409
    assert admin.post(f"/v1/jobs/{uuid.uuid4()}/cancel").status_code == 404


def test_operator_cli(admin_app, admin):
    job_id = submit(admin)
    fail(admin_app, job_id, "disk full")
    runner = admin_app.test_cli_runner()
    listed = runner.invoke(args=["jobs", "failed"])
    assert job_id in listed.output and "disk full" in listed.output
    shown = runner.invoke(args=["jobs", "show", job_id])
    assert "running" in shown.output and "failed" in shown.output
    assert runner.invoke(args=["jobs", "requeue", job_id]).exit_code != 0  # --reason is required
    requeued = runner.invoke(args=["jobs", "requeue", job_id, "--reason", "disk freed"])
    assert "requeued" in requeued.output
    swept = runner.invoke(args=["jobs", "sweep"])
    assert swept.exit_code == 0 and "expired leases" in swept.output


BAD_BODIES = [  # (body, what the message must say)
    (b'{"reason": "model fixed"', "the body is not valid JSON: Expecting ',' delimiter at line 1 column 25"),
    (b"reason=model+fixed", "the body is not valid JSON: Expecting value at line 1 column 1"),
    (b"[" * 50_000, "the body nests too deeply"),  # a RecursionError in the decoder: was a 500
    (b'{"reason": ' * 50_000, "the body nests too deeply"),
    (b'["model fixed"]', "the body must be a JSON object"),
    (b'"model fixed"', "the body must be a JSON object"),
    (b"null", "the body must be a JSON object"),
    (b'{"reason": "x", "limit": NaN}', "the body is not valid JSON: NaN is not a JSON number"),
    (b'{"reason": "\xff"}', "the body is not valid JSON: it is not UTF-8 text"),
    (b'{"limit": ' + b"9" * 5000 + b"}", "the body is not valid JSON: Exceeds the limit (4300 digits)"),
]


@pytest.mark.parametrize("body, message", BAD_BODIES, ids=[repr(b[:24]) for b, _ in BAD_BODIES])
@pytest.mark.parametrize("route", ["one", "bulk"])
def test_a_body_that_is_not_a_json_object_is_400(admin, admin_app, route, body, message):
    """Malformed JSON used to be read as {} (a requeue with no reason), and deep nesting was a 500."""
    job_id = submit(admin)
    fail(admin_app, job_id)
    path = f"/v1/admin/jobs/{job_id}/requeue" if route == "one" else "/v1/admin/jobs/requeue"
    response = admin.post(path, headers=AUTH, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == "body"
    assert error["message"].startswith(message), error["message"]
    with admin_app.extensions["portraits"].sessions() as s:
        assert s.get(Job, uuid.UUID(job_id)).status is JobStatus.FAILED  # nothing was requeued


def test_an_empty_body_is_an_empty_object(admin, admin_app):
    job_id = submit(admin)
    fail(admin_app, job_id)
    response = admin.post(f"/v1/admin/jobs/{job_id}/requeue", headers=AUTH, data=b"",
                          content_type="application/json")
    assert response.status_code == 200 and response.get_json()["status"] == "queued"
    response = admin.post("/v1/admin/jobs/requeue", headers=AUTH)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "reason"
