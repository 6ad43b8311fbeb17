"""Partners, keys, tenancy, idempotency, rate limits and CORS against the real stack."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text, update

from api.key_cache import KeyCache
from shared.accounts import ApiKey
from tests.clock import FakeClock
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait

PNG = encode(synthetic_portrait(48))


def submit(client, data=PNG, **kw):
    return post_image(client, data, **kw)


def test_a_partner_never_sees_another_partners_job(app, keys):
    acme, other = authed(app, keys(partner="acme")[0]), authed(app, keys(partner="globex")[0])
    job_id = submit(acme).get_json()["id"]
    for method, path in (("get", f"/v1/jobs/{job_id}"), ("get", f"/v1/jobs/{job_id}/result"),
                         ("post", f"/v1/jobs/{job_id}/cancel")):
        response = getattr(other, method)(path)
        assert response.status_code == 404, path  # not 403: existence is not revealed
        assert response.get_json()["error"]["code"] == "job_not_found"
    assert acme.get(f"/v1/jobs/{job_id}").status_code == 200


def test_missing_invalid_and_revoked_keys_are_401(app, keys):
    anonymous = app.test_client()
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer pk_nope"}):
        response = anonymous.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="portraits"'
        assert response.get_json()["error"]["code"] == "unauthorized"
    key, _ = keys(partner="acme")
    runner = app.test_cli_runner()
    with app.extensions["portraits"].sessions() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.key_prefix == key[:10])).one()
    clock = FakeClock()
    app.extensions["portraits"].keys = KeyCache(10, timer=clock)
    assert authed(app, key).get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert runner.invoke(args=["keys", "revoke", str(row.id)]).exit_code == 0
    clock.now += 9  # still trusted from this process's memory (KEY_CACHE_SECONDS = 10)...
    assert authed(app, key).get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    clock.now += 2  # ...and refused once the cache entry expired
    assert authed(app, key).get(f"/v1/jobs/{uuid.uuid4()}").status_code == 401



def test_cached_keys_need_no_database_and_last_use_is_written_once_a_minute(app, keys):
    key, _ = keys(partner="acme")
    clock = FakeClock()
    app.extensions["portraits"].keys = KeyCache(10, timer=clock)
    client, statements = authed(app, key), []
    engine = app.extensions["portraits"].reads  # where a request reads keys and jobs

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", count)
    try:
        client.get(f"/v1/jobs/{uuid.uuid4()}")  # verified: SELECT key, UPDATE last_used_at, then the job
        first = statements.count("UPDATE")
        statements.clear()
        clock.now += 5
        client.get(f"/v1/jobs/{uuid.uuid4()}")  # from memory: only the job's SELECT
        assert statements.count("UPDATE") == 0 and statements.count("SELECT") == 1, statements
        statements.clear()
        clock.now += 5.5  # past the 10 s cache: verified again, but last_used_at is < 60 s old
        client.get(f"/v1/jobs/{uuid.uuid4()}")
        assert statements.count("UPDATE") == 0, statements
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert first == 1


def test_keys_are_stored_hashed_and_last_use_is_recorded(app, keys):
    key, _ = keys(partner="acme")
    assert authed(app, key).get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    with app.extensions["portraits"].sessions() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.key_prefix == key[:10])).one()
        dump = s.execute(text("SELECT * FROM api_keys")).all()
    assert row.last_used_at is not None
    assert key not in repr(dump) and row.key_hash != key and len(row.key_hash) == 64


def test_objects_are_keyed_by_partner_and_job(client, storage):
    body = submit(client).get_json()
    names = [o.object_name for o in storage.client.list_objects(storage.bucket, prefix="partners/", recursive=True)
             if body["id"] in o.object_name]
    assert len(names) == 1
    assert names[0].startswith("partners/") and names[0].endswith(f"/jobs/{body['id']}/original")


def test_idempotency_key_replays_same_request_and_refuses_a_different_one(client):
    first = submit(client, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202
    replay = submit(client, headers={"Idempotency-Key": "order-42"})
    assert replay.status_code == 200
    assert replay.get_json() == first.get_json() and replay.headers["Location"] == first.headers["Location"]
    different = submit(client, data=encode(synthetic_portrait(40)), headers={"Idempotency-Key": "order-42"})
    assert different.status_code == 422
    assert different.get_json()["error"]["code"] == "idempotency_conflict"
    fresh = submit(client, headers={"Idempotency-Key": "order-43"})
    assert fresh.status_code == 202 and fresh.get_json()["id"] != first.get_json()["id"]
    assert submit(client).get_json()["id"] != first.get_json()["id"]  # no key: a new job each time


def test_idempotency_keys_are_per_partner_and_a_failed_request_frees_the_key(app, keys):
    acme, other = authed(app, keys(partner="acme")[0]), authed(app, keys(partner="globex")[0])
    a = submit(acme, headers={"Idempotency-Key": "k1"}).get_json()["id"]
    b = submit(other, headers={"Idempotency-Key": "k1"}).get_json()["id"]
    assert a != b
    bad = submit(acme, data=b"not an image", headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 422
    assert submit(acme, headers={"Idempotency-Key": "k2"}).status_code == 202


def test_idempotency_key_still_in_flight_is_409(client, app):
    from shared import idempotency
    from shared.accounts import Partner

    with app.extensions["portraits"].sessions() as s, s.begin():
        partner_id = s.scalar(select(Partner.id).where(Partner.name == "acme"))
        idempotency.reserve(s, partner_id, "busy", idempotency.request_fingerprint(PNG, None), 60)
    response = submit(client, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "idempotency_in_progress"


def test_idempotency_key_abandoned_by_a_dead_request_is_taken_over(client, app):
    """A request that died holding its key (process killed, database gone before the release) must not
    lock the key for its 24 h TTL: after IDEMPOTENCY_LOCK_SECONDS a retry takes it over."""
    from shared import idempotency
    from shared.accounts import Partner

    lock = app.extensions["portraits"].settings.idempotency_lock_seconds
    with app.extensions["portraits"].sessions() as s, s.begin():
        partner_id = s.scalar(select(Partner.id).where(Partner.name == "acme"))
        idempotency.reserve(s, partner_id, "dead", idempotency.request_fingerprint(PNG, None), lock)
        s.execute(update(idempotency.IdempotencyKey).where(idempotency.IdempotencyKey.key == "dead")
                  .values(created_at=text(f"now() - interval '{lock + 1} seconds'")))
    response = submit(client, headers={"Idempotency-Key": "dead"})
    assert response.status_code == 202, response.get_json()
    replay = submit(client, headers={"Idempotency-Key": "dead"})
    assert replay.status_code == 200 and replay.get_json()["id"] == response.get_json()["id"]


def test_rate_limit_per_key_is_429_with_retry_after(make_app, keys):
    app = make_app(rate_limit_submit="2/minute")
    first, second = authed(app, keys(partner="acme")[0]), authed(app, keys(partner="acme")[0])
    assert [submit(first).status_code for _ in range(2)] == [202, 202]
    limited = submit(first)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.get_json()["error"]["code"] == "too_many_requests"
    assert submit(second).status_code == 202  # another key has its own budget


def test_cors_only_for_configured_origins(make_app, keys):
    app = make_app(cors_origins="https://memorial.example")
    client = app.test_client()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Authorization"}
    allowed = client.options("/v1/jobs", headers={"Origin": "https://memorial.example", **preflight})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://memorial.example"
    denied = client.options("/v1/jobs", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in denied.headers
    # A browser client may read what it needs: where its job is, when to retry, how its long poll ended.
    key, _ = keys(partner="acme")
    answer = client.get(f"/v1/jobs/{uuid.uuid4()}", headers={"Origin": "https://memorial.example",
                                                             "Authorization": f"Bearer {key}"})
    exposed = {h.strip() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "Retry-After", "Portraits-Wait"} <= exposed


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/cb", "http://localhost/cb", "http://10.0.0.5/cb",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/cb",
                                 "ftp://example.com/cb", "not a url", "http://user:pw@example.com/cb"])
def test_private_or_malformed_callback_urls_are_refused(make_app, keys, url):
    app = make_app(allow_private_callbacks=False)
    client = authed(app, keys(partner="acme")[0])
    response = post_image(client, PNG, form={"callback_url": url})
    assert response.status_code == 400, url
    assert response.get_json()["error"]["field"] == "callback_url"


def test_partner_and_key_cli(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["partners", "create", "initech"])
    assert created.exit_code == 0 and "pk_" in created.output and "whsec_" in created.output
    key = next(w for w in created.output.split() if w.startswith("pk_"))
    assert authed(app, key).get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    admin = runner.invoke(args=["keys", "create", "--admin", "--name", "ops"])
    assert "ak_" in admin.output
    listed = runner.invoke(args=["keys", "list"])
    assert "initech" in listed.output and "ops" in listed.output and key not in listed.output
    assert runner.invoke(args=["keys", "create", "--name", "x"]).exit_code != 0
