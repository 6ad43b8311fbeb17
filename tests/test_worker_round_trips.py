"""What one job costs the worker in round trips to Postgres, read off the wire (libpq's trace of what
the worker's connections send) against the real Postgres, Redis and S3: the read of a claimable job,
its claim and its success are one statement each, with no BEGIN or COMMIT around them (the worker's
`statements` sessions, autocommit: shared/db.py), except a success with a callback, whose delivery row
must commit in the same transaction. The pipeline runs in-process with a stand-in model.
"""
from __future__ import annotations

import contextlib
import re
import tempfile

import pytest
from sqlalchemy import event

from shared.db import make_engine, make_session_factory
from tests.fake_runtime import RepeatUpscaler, Runtime
from tests.imagegen import encode, post_image, synthetic_portrait
from worker.pipeline import process_job

PING = "SELECT 1"  # the pool's pre-ping on checkout


@contextlib.contextmanager
def wire_trace(engine):
    """What the connections of `engine`'s pool send while the block runs: one entry per round trip
    (a simple Query, or an extended-protocol statement up to its Sync), the statement's SQL."""
    seen: list[str] = []

    def checkout(dbapi_conn, record, proxy):
        record.info["trace"] = tempfile.TemporaryFile()  # one file per checkout: no interleaved lines
        dbapi_conn.pgconn.trace(record.info["trace"].fileno())

    def checkin(dbapi_conn, record):
        trace = record.info.pop("trace", None)
        if trace is None:
            return
        dbapi_conn.pgconn.untrace()
        with trace:
            trace.seek(0)
            for line in trace.read().decode().splitlines():  # SQL may span lines: only its first
                fields = line.split("\t")
                if len(fields) > 4 and fields[1] == "F" and fields[3] in ("Query", "Parse"):
                    seen.append(re.search(r'"([A-Za-z][^"]*)', fields[4]).group(1))

    event.listen(engine.pool, "checkout", checkout)
    event.listen(engine.pool, "checkin", checkin)
    try:
        yield seen
    finally:
        event.remove(engine.pool, "checkout", checkout)
        event.remove(engine.pool, "checkin", checkin)


@pytest.fixture
def worker_runtime(settings, storage):
    engine = make_engine(settings.database_url, "portraits-worker")
    # No heartbeat during the job: only the job's own statements are on the wire.
    quiet = settings.model_copy(update={"progress_interval_seconds": 60})
    yield Runtime(quiet, make_session_factory(engine), storage, RepeatUpscaler())
    engine.dispose()


def run_traced(client, rt, form=None) -> list[str]:
    response = post_image(client, encode(synthetic_portrait(24)), form=form)
    assert response.status_code == 202, response.get_json()
    with wire_trace(rt.sessions.kw["bind"]) as seen:
        assert process_job(response.get_json()["id"], rt) == "succeeded"
    return [sql.split()[0].upper() for sql in seen if sql != PING]


def test_a_job_is_three_statements_without_begin_or_commit(client, worker_runtime):
    # The claimable read, the claim and the success (data-modifying CTEs: WITH ... UPDATE ... INSERT).
    assert run_traced(client, worker_runtime) == ["SELECT", "WITH", "WITH"]


def test_a_success_with_a_callback_commits_with_its_delivery_row(client, worker_runtime):
    statements = run_traced(client, worker_runtime, form={"callback_url": "https://partner.example/hook"})
    assert statements == ["SELECT", "WITH", "BEGIN", "WITH", "INSERT", "COMMIT"]
