"""One database connection per API request for its reads, in autocommit mode, with no pre-ping.

A poll (`GET /v1/jobs/<id>`) used to open a session for the key and another for the job, and each
ORM session runs BEGIN, the statement and ROLLBACK after the pool's pre-ping: five round trips to
Postgres for one row. Here every read of the request (the key when it is not cached, the job) runs
through `execute` on one connection, checked out on first use, as single statements in autocommit,
with no BEGIN or ROLLBACK: each reads committed data, as the one-statement transactions before did.
Writes that must be atomic across statements keep their own session and transaction
(`services.sessions()`, whose pool pre-pings); a single-statement write that may run twice, such as
the key's `last_used_at`, may use `execute` too. The connection goes back to the pool when the
request ends (teardown), also after an error.

These reads have a pool of their own without the pre-ping (a `SELECT 1` round trip before every
poll, ~7 % of a poll's CPU). A restarted Postgres is found by the statement itself instead: the
failed connection is invalidated, with every older one in the pool (SQLAlchemy does both), and
`execute` runs the statement once more on a new connection, so a restart still fails no request
(tests/test_request_cost.py).
"""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.exc import DBAPIError

from shared.db import autocommit, make_engine


def reads_engine(url: str) -> Engine:
    """An engine and pool for requests' reads: each statement its own transaction, no pre-ping."""
    return autocommit(make_engine(url, "portraits-api-reads", pre_ping=False))


def execute(statement, params: dict | None = None) -> Result:
    """Run one statement on this request's connection; if that connection turns out dead (Postgres
    restarted or dropped it), run it once more on a new one. Only for statements that may run twice."""
    try:
        return connection().execute(statement, params)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    release()  # back to the pool, which discards it (invalidated) and opens a new one on checkout
    return connection().execute(statement, params)


def connection() -> Connection:
    """This request's connection (checked out on first use)."""
    conn = g.get("db_connection")
    if conn is None:
        conn = g.db_connection = current_app.extensions["portraits"].reads.connect()
    return conn


def release() -> None:
    """Give this request's connection back to the pool now (a long poll, while it waits); the next
    read checks one out again."""
    conn = g.pop("db_connection", None)
    if conn is not None:
        conn.close()


def _release(exc: BaseException | None) -> None:
    release()


def install(app: Flask) -> None:
    app.teardown_appcontext(_release)
