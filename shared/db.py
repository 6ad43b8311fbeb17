"""Engine and session factory. The caller owns each session (one per request or per task)."""
from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import shared.tables  # noqa: F401  (every table on the metadata, whichever process this is)


def make_engine(url: str, role: str = "portraits", pre_ping: bool = True) -> Engine:
    # pool_pre_ping: a Postgres restart must not surface as an error on the next request. Without it
    # (the API's reads, api/db.py) the caller must run a statement again when its connection was dead.
    # connect_timeout: an unreachable database fails a request in seconds, not minutes.
    # application_name: pg_stat_activity shows which process holds each connection (`role`).
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=5, max_overflow=5,
                         connect_args={"connect_timeout": 5, "application_name": role})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: views serialise rows after committing without a second query.
    return sessionmaker(engine, expire_on_commit=False)


def make_statement_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine`'s pool whose statements each commit as they run (autocommit): no BEGIN and
    no COMMIT, two round trips to Postgres fewer per session. Only for work that is one statement,
    such as the worker's claim (one data-modifying CTE): anything that must be atomic across
    statements needs `make_session_factory`'s transactions. Session hooks still run: `after_commit`
    fires when the session "commits", after the statement itself committed."""
    return make_session_factory(autocommit(engine))


def autocommit(engine: Engine) -> Engine:
    """`engine`, on the same pool, with each statement its own transaction (no BEGIN, no COMMIT)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
