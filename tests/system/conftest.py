"""One running stack for the system tests: its own database, Redis database index and bucket (so no
other test's worker or truncation can touch it), started from the Procfile by honcho, keys created
with the operator CLI (`portraits`), everything else over HTTP."""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DB, leased_redis_db
from tests.processes import ROOT
from tests.system.stack import Client, Stack

TILE = 32  # MODEL_TILE: a 32·k px portrait is k² tiles
TILE_DELAY = 0.04  # seconds per tile (tests/paced_worker.py): a 512 px portrait runs ~10 s


def stack_port() -> int:
    """A base port with base + 100, + 200, + 300 free too: honcho gives the Procfile's lines those
    ports, and the worker, sweeper and deliverer serve their metrics on them."""
    from devstack.ports import free_port, port_is_free

    for _ in range(100):
        port = free_port()
        if port + 300 < 32768 and all(port_is_free(port + step) for step in (100, 200, 300)):
            return port
    raise RuntimeError("no free base port with its +100..+300 neighbours")


@contextlib.contextmanager
def own_stack_env(settings, tmp_path_factory, name: str, **overrides):
    """(folder, env, port) for a stack of its own: database, Redis database index and bucket named
    after `name`, the system tests' settings with `overrides` on top; the database dropped after."""
    from shared.storage import Storage
    from tests.database import drop_database, fresh_database

    db_name = f"{TEST_DB}_{name}"
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    database_url = fresh_database(base, db_name)
    try:
        with leased_redis_db() as redis_url:
            values = settings.model_copy(update={**dict(
                database_url=database_url, redis_url=redis_url,
                s3_bucket=f"portraits-{name}".replace("_", "-"),
                model_tile=TILE, torch_threads=1, sweep_interval_seconds=0.5, lease_seconds=30,
                result_url_ttl_seconds=300, webhook_backoff_seconds=0.5, secret_key=secrets.token_hex(32),
                rate_limit_sign_in="1000/minute"), **overrides})
            Storage(values).ensure_bucket()
            env = {k.upper(): str(v).lower() if isinstance(v, bool) else str(v)
                   for k, v in values.model_dump().items() if v is not None}
            env["TEST_TILE_DELAY_SECONDS"] = str(TILE_DELAY)
            yield tmp_path_factory.mktemp("stack"), env, stack_port()
    finally:
        drop_database(base, db_name)


@pytest.fixture(scope="package")
def stack_env(request, settings, tmp_path_factory):
    """Per test package (tests/system, and tests/browser, which imports these fixtures): its own stack."""
    package = Path(request.node.path)
    package = (package.parent if package.is_file() else package).name  # "system", "browser"
    with own_stack_env(settings, tmp_path_factory, package) as folder_env_port:
        yield folder_env_port


@pytest.fixture(scope="package")
def stack(stack_env):
    folder, env, port = stack_env
    running = Stack(folder, env, port).start()
    yield running
    running.stop()
    print(f"\n--- stack log ({running.log_path}) ---\n{running.log()[-4000:]}")


def portraits_cli(stack: Stack, *args: str) -> str:
    """The operator CLI, finding the stack's settings from its env file as it finds .local/env."""
    env = {**os.environ, "PORTRAITS_ENV_FILE": str(stack.folder / "env")}
    for name in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT"):  # the env file must be what decides
        env.pop(name, None)
    result = subprocess.run([str(Path(sys.executable).parent / "portraits"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Partner:
    def __init__(self, stack: Stack, name: str):
        out = portraits_cli(stack, "partners", "create", name)
        self.name = name
        self.key = re.search(r"api key \S+: (pk_\S+)", out).group(1)
        self.secret = re.search(r"webhook secret: (whsec_\S+)", out).group(1)
        self.client = Client(stack.url, self.key)


@pytest.fixture(scope="package")
def partner(stack) -> Partner:
    return Partner(stack, "Eternal Memories")


@pytest.fixture(scope="package")
def other_partner(stack) -> Partner:
    return Partner(stack, "Other Memorials")


@pytest.fixture(scope="package")
def admin_key(stack) -> str:
    out = portraits_cli(stack, "keys", "create", "--admin", "--name", "ops")
    return re.search(r"(ak_\S+)", out).group(1)


@pytest.fixture(scope="package")
def admin(stack, admin_key) -> Client:
    return Client(stack.url, admin_key)
