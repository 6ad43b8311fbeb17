"""A fresh, migrated database for a test run or a benchmark."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_database(base_url: str, name: str) -> str:
    """Drop and create database `name` on base_url's server, migrate it to head; return its URL."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.set(database=name).render_as_string(hide_password=False)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes.update(database_url=url, configure_logger=False)
    command.upgrade(cfg, "head")  # the schema comes from the migrations, as in production
    return url


def drop_database(base_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def terminate_backends(url: str, where: str) -> int:
    """Terminate the backends of url's database that match the SQL condition `where` on
    pg_stat_activity (never this call's own), as a Postgres restart does; how many were terminated."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    killer = create_engine(url, poolclass=NullPool)
    try:
        with killer.connect() as conn:
            return conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND ({where})")).scalar()
    finally:
        killer.dispose()
