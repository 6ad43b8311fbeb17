"""Fixtures for real Postgres, Redis and S3, shared by every test.

- Postgres: a fresh database `portraits_test` on the server named by DATABASE_URL (default: the
  machine's 127.0.0.1:5432), built by `alembic upgrade head`, emptied between tests.
- Redis: the server named by REDIS_URL, database 15, flushed at start and between tests.
- S3: a `weed mini` started by devstack on free ports under .local/test-s3 (or S3_ENDPOINT when given).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PORTRAIT_DATA_DIR", ROOT.parent / "shared" / "data"))
VAL_FACES = DATA_DIR / "faces" / "val"
TEST_DB = f"portraits_test_{os.getpid()}"  # one per run: concurrent runs never share a database


def pytest_configure(config):
    os.environ.setdefault("TORCH_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def database_url():
    from tests.database import drop_database, fresh_database

    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    yield fresh_database(base, TEST_DB)
    drop_database(base, TEST_DB)


@contextlib.contextmanager
def leased_redis_db():
    """A Redis database index leased for as long as the block runs (lock key in db 0), so concurrent
    runs, and stacks within one run, never flush or consume each other's messages."""
    from urllib.parse import urlsplit

    import redis

    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    server = f"redis://{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    locks = redis.Redis.from_url(f"{server}/0")
    for index in range(15, 0, -1):
        if locks.set(f"portraits-test-db:{index}", os.getpid(), nx=True, ex=6 * 3600):
            break
    else:
        pytest.fail("all 15 Redis test databases are leased by other test runs")
    url = f"{server}/{index}"
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        locks.delete(f"portraits-test-db:{index}")
        locks.close()


@pytest.fixture(scope="session")
def redis_url():
    with leased_redis_db() as url:
        yield url


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """(endpoint, access_key, secret_key, bucket) of a running S3 server."""
    if os.environ.get("TEST_S3_ENDPOINT"):
        yield (os.environ["TEST_S3_ENDPOINT"], os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"],
               "portraits-test")
        return
    from devstack.ports import free_port
    from devstack.s3 import start_weed

    data = tmp_path_factory.mktemp("s3")
    server = start_weed(data, port=free_port(), access_key="test-access", secret_key="test-secret-key",
                        bucket="portraits-test")
    try:
        yield server.endpoint, "test-access", "test-secret-key", "portraits-test"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(database_url, redis_url, s3) -> Settings:
    endpoint, access, secret, bucket = s3
    return Settings(database_url=database_url, redis_url=redis_url, s3_endpoint=endpoint,
                    s3_access_key=access, s3_secret_key=secret, s3_bucket=bucket, model_device="cpu",
                    torch_threads=2, result_url_ttl_seconds=120, allow_private_callbacks=True,
                    rate_limit_submit="1000/minute", rate_limit_default="10000/minute")


@pytest.fixture(scope="session")
def storage(settings):
    from shared.storage import Storage

    storage = Storage(settings)
    storage.ensure_bucket()
    return storage


@pytest.fixture
def clean_state(settings, storage):
    """Empty job table and broker before each test that touches them."""
    import redis

    from shared.tables import TABLES

    engine = create_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(sorted(TABLES))}"))
    engine.dispose()
    redis.Redis.from_url(settings.redis_url).flushdb()
    yield


@pytest.fixture
def app(settings, storage, clean_state):
    from api import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["portraits"].close()


@pytest.fixture
def make_app(settings, storage, clean_state):
    """Build extra apps with setting overrides (e.g. an unreachable Redis); disposed after the test."""
    from api import create_app

    apps = []

    def build(**overrides):
        app = create_app(settings.model_copy(update=overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["portraits"].close()


@pytest.fixture
def keys(app):
    """keys(partner=NAME | admin=True, callback_url=None) → (api key, partner or None)."""
    from shared.accounts import ADMIN, PARTNER, Partner, create_key, create_partner

    sessions = app.extensions["portraits"].sessions

    def make(partner: str | None = None, admin: bool = False, callback_url: str | None = None):
        with sessions() as session, session.begin():
            row = None
            if partner:
                from sqlalchemy import select

                row = session.scalar(select(Partner).where(Partner.name == partner)) or \
                    create_partner(session, partner)
            _, key = create_key(session, role=ADMIN if admin else PARTNER, name=f"test-{partner or 'admin'}",
                                partner=row, callback_url=callback_url)
        return key, row

    return make


def authed(app, key: str):
    """A test client that sends `Authorization: Bearer <key>` on every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def client(app, keys):
    """A partner's client (partner "acme")."""
    return authed(app, keys(partner="acme")[0])


@pytest.fixture
def admin_client(app, keys):
    return authed(app, keys(admin=True)[0])


def require_faces():
    if not VAL_FACES.is_dir():
        pytest.skip(f"face data absent: {VAL_FACES} (../shared/data beside the checkout) is needed")
    return sorted(VAL_FACES.glob("*.jpg"))
