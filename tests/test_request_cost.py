"""What one API request costs in round trips, counted against the real Postgres and Redis (never timed):
a poll is one Redis command (the rate limiter's) and one SQL statement on one pooled connection, a
submit does not read back the rows it wrote, and a 429 still says when to come back. (Revoked keys
refused once KEY_CACHE_SECONDS have passed, with a fake clock: tests/test_partners.py.)
bench/poll_load.py measures the latency this buys; docs/benchmarks.md has the figures."""
from __future__ import annotations

import contextlib
import gc
import runpy
import threading
import uuid
from urllib.parse import urlsplit

import redis
import requests
from sqlalchemy import event

from api.key_cache import KeyCache
from tests.api_process import ApiProcess
from tests.clock import FakeClock
from tests.conftest import ROOT, authed
from tests.database import terminate_backends
from tests.imagegen import encode, post_image, synthetic_portrait


@contextlib.contextmanager
def sql_trace(engine):
    """Statements (first word) run through `engine`'s pool, and how many connections were checked out."""
    seen = {"statements": [], "checkouts": 0}

    def statement(conn, cursor, text, *args):
        seen["statements"].append(text.split()[0].upper())

    def checkout(*args):
        seen["checkouts"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine.pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine.pool, "checkout", checkout)


@contextlib.contextmanager
def redis_commands(redis_url: str):
    """The commands clients send to `redis_url`'s database while the block runs, as MONITOR reports them
    (each a round trip; the commands a Lua script runs inside the server are left out)."""
    parts = urlsplit(redis_url)
    db = int(parts.path.strip("/") or 0)
    server, control = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    control.ping()  # connected (and its SELECT sent) before the trace starts
    sentinel = f"end-of-trace-{uuid.uuid4()}"
    seen: list[str] = []
    ready = threading.Event()

    def watch():
        with server.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
                if int(command["db"]) == db and command["client_type"] != "lua":
                    seen.append(command["command"].split()[0].upper())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(10), "MONITOR did not start"  # its OK was read: every later command is reported
    try:
        yield seen
    finally:
        control.echo(sentinel)
        watcher.join(10)
        server.close()
        control.close()
    assert not watcher.is_alive(), "MONITOR never saw the end of the trace"


def submitted_job(app, key) -> str:
    return post_image(authed(app, key), encode(synthetic_portrait(48))).get_json()["id"]


def test_a_poll_is_one_statement_on_one_connection(app, keys):
    key, _ = keys(partner="acme")
    job_id = submitted_job(app, key)
    clock = FakeClock()
    app.extensions["portraits"].keys = KeyCache(10, timer=clock)
    client = authed(app, key)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # verifies the key: cached from here
    with sql_trace(app.extensions["portraits"].reads) as seen:
        for _ in range(3):
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert seen == {"statements": ["SELECT"] * 3, "checkouts": 3}, seen  # no BEGIN/ROLLBACK, no 2nd session
    clock.now += 11  # past KEY_CACHE_SECONDS: the key is read again, on the same connection as the job
    with sql_trace(app.extensions["portraits"].reads) as seen:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert seen == {"statements": ["SELECT", "SELECT"], "checkouts": 1}, seen


def test_a_submit_writes_its_rows_without_reading_them_back(app, keys):
    """The job's created_at and other server defaults come back with its INSERT (RETURNING): no
    SELECT of the row it just wrote before answering."""
    key, _ = keys(partner="acme")
    client = authed(app, key)
    with sql_trace(app.extensions["portraits"].engine) as seen:
        assert post_image(client, encode(synthetic_portrait(48))).status_code == 202
    # The pending original; the job, its event, the settled original; the job marked as published.
    assert seen["statements"] == ["INSERT", "INSERT", "INSERT", "DELETE", "UPDATE"], seen


def test_no_request_fails_after_postgres_drops_every_connection(app, keys, settings):
    """A Postgres restart or failover closes every pooled connection; the next requests must not fail
    with 503: a read runs again on a new connection (api/db.py: its pool has no pre-ping), a write's
    session pool pre-pings (shared/db.py)."""
    key, _ = keys(partner="acme")
    job_id = submitted_job(app, key)
    client = authed(app, key)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # the pool now holds idle connections
    assert terminate_backends(settings.database_url, "state = 'idle'") >= 1  # every idle one, as a restart
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # a read on the request's connection
    assert client.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert post_image(client, encode(synthetic_portrait(48))).status_code == 202  # a write in a session


def test_a_poll_is_one_redis_command(app, keys, settings):
    key, _ = keys(partner="acme")
    job_id = submitted_job(app, key)
    client = authed(app, key)
    client.get(f"/v1/jobs/{job_id}")  # the limiter's script is loaded, the key cached
    with redis_commands(settings.redis_url) as seen:
        for _ in range(4):
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert seen == ["EVALSHA"] * 4, seen  # the moving window's hit; no second script for headers


def test_only_a_429_carries_the_window_and_when_to_come_back(make_app, keys):
    client = authed(make_app(rate_limit_default="2/minute"), keys(partner="acme")[0])
    for _ in range(2):
        answered = client.get(f"/v1/jobs/{uuid.uuid4()}")
        assert answered.status_code == 404 and "X-RateLimit-Limit" not in answered.headers
    limited = client.get(f"/v1/jobs/{uuid.uuid4()}")
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "too_many_requests"
    assert limited.headers["X-RateLimit-Limit"] == "2" and limited.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert int(limited.headers["X-RateLimit-Reset"]) > 0


def test_the_limit_holds_in_the_real_gunicorn(app, keys, settings, tmp_path):
    """The Procfile's API (2 gunicorn workers, counters in Redis): the 6th poll of a 5/minute key is a
    429 with its headers, the 5 before carry none. Each poll on a new connection, as clients do."""
    key, _ = keys(partner="acme")
    job_id = submitted_job(app, key)
    limited = settings.model_copy(update={"rate_limit_default": "5/minute"})
    with ApiProcess(ROOT, tmp_path / "api", limited).run() as api:
        answers = [requests.get(f"{api.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"},
                                timeout=10) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert not any(name.startswith("X-RateLimit") for a in answers[:5] for name in a.headers)
    assert answers[5].headers["X-RateLimit-Limit"] == "5"
    assert 1 <= int(answers[5].headers["Retry-After"]) <= 60


def test_gunicorn_workers_freeze_what_they_loaded(tmp_path, monkeypatch):
    """A full collection of the app's ~140,000 objects stalled a worker's threads for tens of ms."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    before = gc.get_freeze_count()
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
