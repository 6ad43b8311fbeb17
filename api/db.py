"""One database connection per API request for its reads, in autocommit mode.

A poll (`GET /v1/jobs/<id>`) used to open a session for the key and another for the job, and each
ORM session runs BEGIN, the statement and ROLLBACK after the pool's pre-ping: five round trips to
Postgres for one row. Here the request's first read checks a connection out (one pre-ping: a
restarted Postgres still never fails a request), and every read of the request (the key when it
is not cached, the job) runs on it as single statements in autocommit, with no BEGIN or ROLLBACK:
each reads committed data, as the one-statement transactions before did. Writes that must be
atomic across statements keep their own session and transaction (`services.sessions()`); a
single-statement write such as the key's `last_used_at` may use this connection. The connection
goes back to the pool when the request ends (teardown), also after an error.
"""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.engine import Connection, Engine


def autocommit(engine: Engine) -> Engine:
    """The same engine and pool, whose connections run each statement in its own transaction."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


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
