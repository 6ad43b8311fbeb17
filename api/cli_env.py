"""Which stack the `portraits` operator command talks to, and whether its database is usable.

`load_env()` reads the checkout's `.local/env` (or `PORTRAITS_ENV_FILE`) into the environment before
the settings are read; `schema_problem()` says why a database cannot be used (unreachable, no schema,
another revision than the code's migrations), or None.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV_FILE = ROOT / ".local" / "env"
CONNECT_TIMEOUT_SECONDS = 5


class EnvFileMissing(Exception):
    """PORTRAITS_ENV_FILE names a file that does not exist."""


def load_env(environ: dict[str, str] | None = None) -> str:
    """Load the env file into os.environ (variables already set win); return where settings come from."""
    from dotenv import load_dotenv

    environ = os.environ if environ is None else environ
    named = environ.get("PORTRAITS_ENV_FILE")
    path = Path(named).expanduser() if named else DEFAULT_ENV_FILE
    if not path.is_file():
        if named:
            raise EnvFileMissing(f"PORTRAITS_ENV_FILE={named}: no such file")
        return f"no {path} (start the stack with `make run`); using the environment and defaults"
    load_dotenv(path, override=False)
    return f"settings from {path} (environment variables win)"


def describe_database(url: str) -> str:
    """`NAME at HOST:PORT` for a SQLAlchemy URL; never the password."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"{u.database} at {u.host or 'localhost'}:{u.port or 5432}"


def migrations():
    """This checkout's migrations/ as an Alembic ScriptDirectory."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))


def schema_problem(url: str) -> str | None:
    """Why the database at `url` cannot be used by this code, as one line; None when it can."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    where = describe_database(url)
    fix = "run `make migrate`, or point DATABASE_URL at the stack's database"
    engine = create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return f"database {where} has no portraits schema (alembic_version missing); {fix}"
            current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (f"cannot use database {where}: {reason}; "
                "is the stack up (`make run`) and DATABASE_URL its database?")
    finally:
        engine.dispose()
    script = migrations()
    expected = tuple(sorted(script.get_heads()))
    if current == expected:
        return None
    have = ", ".join(current) or "none"
    known = {rev.revision for rev in script.walk_revisions()}
    if not set(current) <= known:
        return (f"database {where} is at schema revision {have}, which this checkout's migrations/ do not "
                "know (migrated by newer code?); update the checkout or point DATABASE_URL elsewhere")
    return f"database {where} is at schema revision {have}, this code needs {', '.join(expected)}; {fix}"
