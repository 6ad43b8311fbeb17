"""The HTTP contract against real Postgres, Redis and S3 (no worker: jobs stay queued)."""
from __future__ import annotations

import json
import uuid

import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from shared.models import Job
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait


def submit(client, data: bytes, name: str = "portrait.png"):
    return post_image(client, data, name)


def job_count(app) -> int:
    with app.extensions["portraits"].sessions() as s:
        return s.scalar(select(func.count()).select_from(Job))


def unreachable_db(url: str) -> str:
    return make_url(url).set(port=1).render_as_string(hide_password=False)


def objects(storage) -> list[str]:
    return [o.object_name for o in storage.client.list_objects(storage.bucket, recursive=True)]


def test_submit_stores_original_row_and_message(client, app, storage, settings):
    before = set(objects(storage))
    response = submit(client, encode(synthetic_portrait(128)))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert body["status"] == "queued"
    assert body["input"] == {"width": 128, "height": 128}
    assert body["output"] is None and body["error"] is None
    assert body["model"]["name"]
    # The original is stored under a key derived from the partner and job ids, not the file name.
    new = set(objects(storage)) - before
    assert len(new) == 1 and new.pop().endswith(f"/jobs/{body['id']}/original")
    # One message on the broker, carrying only the job id.
    queued = redis.Redis.from_url(settings.redis_url).lrange("celery", 0, -1)
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "worker.upscale_portrait"
    assert body["id"] in message["headers"]["argsrepr"]


def test_poll_returns_the_job(client):
    job_id = submit(client, encode(synthetic_portrait(64), "JPEG")).get_json()["id"]
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"id", "status", "created_at", "started_at", "finished_at", "input", "output",
                         "error", "model"}
    assert body["input"] == {"width": 64, "height": 64}


def test_not_an_image_is_422_and_leaves_nothing(client, app, storage):
    before = set(objects(storage))
    for data, name in [(b"hello, I am text", "note.png"), (encode(synthetic_portrait(32))[:60], "cut.png"),
                       (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "fake.png")]:
        response = submit(client, data, name)
        assert response.status_code == 422, (name, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "invalid_image" and "image" in error["message"]
    assert job_count(app) == 0
    assert set(objects(storage)) == before


def test_missing_or_empty_field_is_400(client, app):
    response = client.post("/v1/jobs", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "'image'" in response.get_json()["error"]["message"]
    assert submit(client, b"").status_code == 400
    assert job_count(app) == 0


def test_too_large_body_is_413_json(client, app, settings):
    # A raw body: werkzeug's test client would spool a large multipart body to an unclosed temp file.
    big = b"\0" * (settings.max_upload_bytes + 1)
    response = client.post("/v1/jobs", data=big, content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 413
    assert "limit" in response.get_json()["error"]["message"]


def test_unknown_job_is_404_json(client):
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "job_not_found"
    assert client.get(f"/v1/jobs/{uuid.uuid4()}/result").status_code == 404


def test_result_is_409_until_succeeded(client):
    job_id = submit(client, encode(synthetic_portrait(64))).get_json()["id"]
    response = client.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 409
    assert response.get_json()["error"]["status"] == "queued"


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert {k: v["ok"] for k, v in response.get_json()["checks"].items()} == {
        "postgres": True, "redis": True, "s3": True}


def test_readiness_reports_each_dependency(settings, make_app):
    app = make_app(redis_url="redis://127.0.0.1:1/0", database_url=unreachable_db(settings.database_url))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["postgres"]["ok"] is False and checks["redis"]["ok"] is False
    assert checks["s3"]["ok"] is True


def test_broker_down_still_accepts_the_job_for_the_sweeper(make_app, keys):
    app = make_app(redis_url="redis://127.0.0.1:1/0")
    response = submit(authed(app, keys(partner="acme")[0]), encode(synthetic_portrait(64)))
    assert response.status_code == 202
    with app.extensions["portraits"].sessions() as s:
        job = s.get(Job, uuid.UUID(response.get_json()["id"]))
    assert job.status.value == "queued" and job.enqueued_at is None  # the sweeper will publish it


def test_database_down_answers_503_and_stores_nothing(settings, storage, make_app, keys):
    before = set(objects(storage))
    app = make_app(database_url=unreachable_db(settings.database_url))
    response = submit(authed(app, keys(partner="acme")[0]), encode(synthetic_portrait(64)))
    assert response.status_code == 503
    assert "database" in response.get_json()["error"]["message"]
    assert set(objects(storage)) == before
