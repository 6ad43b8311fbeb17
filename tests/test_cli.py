"""The `portraits` operator command, run as operators run it: the installed console script, in a
subprocess, against real databases (migrated, empty, behind, unreachable)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.settings import Settings
from tests.database import ROOT, drop_database

PORTRAITS = Path(sys.executable).parent / "portraits"
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/portraits"


def portraits(*args: str, env_file: Path | None = None, **environ: str) -> subprocess.CompletedProcess:
    """Run the console script with none of the service settings of this test run in its environment."""
    assert PORTRAITS.exists(), f"{PORTRAITS} missing: `pip install -e .` installs the console script"
    settings = {name.upper() for name in Settings.model_fields} | {"PORTRAITS_ENV_FILE"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings} | environ
    if env_file:
        env["PORTRAITS_ENV_FILE"] = str(env_file)
    return subprocess.run([str(PORTRAITS), *args], env=env, cwd="/", capture_output=True, text=True,
                          timeout=60)


def env_file(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "env"
    path.write_text(f"# like .local/env\nDATABASE_URL={database_url}\n")
    return path


@pytest.fixture
def partner_name(database_url):
    name = f"cli-test-{os.getpid()}"
    yield name
    engine = create_engine(database_url)
    with engine.begin() as conn:
        ids = "SELECT id FROM partners WHERE name = :name"
        conn.execute(text(f"DELETE FROM api_keys WHERE partner_id IN ({ids})"), {"name": name})
        conn.execute(text("DELETE FROM partners WHERE name = :name"), {"name": name})
    engine.dispose()


@pytest.fixture
def scratch_database(database_url):
    """(url, name) of an empty database beside the test database; dropped afterwards."""
    name = f"{make_url(database_url).database}_cli"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False), name
    drop_database(database_url, name)


def test_help_needs_no_database():
    done = portraits("--help", DATABASE_URL=UNREACHABLE)
    assert done.returncode == 0, done.stderr
    for group in ("jobs", "partners", "keys"):
        assert group in done.stdout
    done = portraits("keys", "--help", DATABASE_URL=UNREACHABLE)
    assert done.returncode == 0 and "revoke" in done.stdout


def test_partners_create_and_keys_list_use_the_env_file(tmp_path, database_url, partner_name):
    path = env_file(tmp_path, database_url)
    created = portraits("partners", "create", partner_name, env_file=path)
    assert created.returncode == 0, created.stderr
    assert "api key" in created.stdout and "pk_" in created.stdout and "whsec_" in created.stdout
    # One line on stderr: which file and which database (name and host, never a password).
    u = make_url(database_url)
    assert f"settings from {path}" in created.stderr
    assert f"database {u.database} at {u.host}:{u.port or 5432}" in created.stderr
    assert not u.password or u.password not in created.stderr

    listed = portraits("keys", "list", env_file=path)
    assert listed.returncode == 0, listed.stderr
    assert partner_name in listed.stdout and f"{partner_name}-default" in listed.stdout

    failed = portraits("jobs", "failed", env_file=path)
    assert failed.returncode == 0 and "failed job(s)" in failed.stdout


def test_the_environment_wins_over_the_env_file(tmp_path, database_url):
    done = portraits("keys", "list", env_file=env_file(tmp_path, UNREACHABLE), DATABASE_URL=database_url)
    assert done.returncode == 0, done.stderr
    assert f"database {make_url(database_url).database} at" in done.stderr


def test_a_database_without_the_schema_is_refused_clearly(tmp_path, scratch_database):
    url, name = scratch_database
    done = portraits("partners", "create", "nobody", env_file=env_file(tmp_path, url))
    assert done.returncode == 1
    assert f"database {name} at" in done.stderr and "has no portraits schema (alembic_version missing)" \
        in done.stderr and "make migrate" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    engine = create_engine(url)
    with engine.connect() as conn:  # nothing was written
        assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
    engine.dispose()


def test_a_database_behind_the_migrations_is_refused(tmp_path, scratch_database):
    from alembic import command
    from alembic.config import Config

    from api.cli_env import migrations

    url, name = scratch_database
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes.update(database_url=url, configure_logger=False)
    command.upgrade(cfg, "0001")
    done = portraits("keys", "list", env_file=env_file(tmp_path, url))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"database {name} at" in done.stderr and "at schema revision 0001" in done.stderr
    assert migrations().get_current_head() in done.stderr and "make migrate" in done.stderr


def test_an_unreachable_database_is_refused_clearly(tmp_path):
    done = portraits("jobs", "failed", env_file=env_file(tmp_path, UNREACHABLE))
    assert done.returncode == 1
    assert "cannot use database portraits at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_missing_env_file_is_refused():
    done = portraits("keys", "list", env_file=Path("/nonexistent/env"))
    assert done.returncode == 1 and "PORTRAITS_ENV_FILE=/nonexistent/env: no such file" in done.stderr
    assert "Traceback" not in done.stderr
