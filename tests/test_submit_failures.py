"""Submit is exactly once from the client's view: a failure injected at each step of POST /v1/jobs,
against the real Postgres, Redis and S3.

Before the job row is committed, every failure answers 503 and leaves nothing behind: no row, no
object, no pending upload, and the Idempotency-Key is free again. Once it is committed, the answer is
202 with the job, whatever fails afterwards. Database failures are injected as an OperationalError
raised when the app's engine is about to run a matching statement (what psycopg raises when the server
goes away), so the code under test runs unchanged.
"""
from __future__ import annotations

import contextlib
import uuid

import pytest
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import OperationalError

from shared.idempotency import IdempotencyKey
from shared.models import Job
from shared.uploads import PendingUpload
from tests.imagegen import encode, post_image, synthetic_portrait

PNG = encode(synthetic_portrait(48))


@contextlib.contextmanager
def database_fails(app, statement_part: str, times: int = 1):
    """Raise OperationalError on the next `times` statements that contain `statement_part`."""
    engine, left = app.extensions["portraits"].engine, [times]

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement_part.upper() in statement.upper() and left[0] > 0:
            left[0] -= 1
            raise OperationalError(statement, parameters, ConnectionError("server closed the connection"))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)


def count(app, model) -> int:
    with app.extensions["portraits"].sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def originals(storage) -> list[str]:
    return [o.object_name for o in storage.client.list_objects(storage.bucket, prefix="partners/", recursive=True)]


def left_nothing(app, storage, objects_before) -> None:
    assert count(app, Job) == 0
    assert count(app, PendingUpload) == 0
    assert count(app, IdempotencyKey) == 0, "the Idempotency-Key must be free again"
    assert set(originals(storage)) == set(objects_before)


def submit(client, key: str | None = "order-1"):
    return post_image(client, PNG, headers={"Idempotency-Key": key} if key else {})


@pytest.mark.parametrize("step", [
    "INSERT INTO idempotency_keys",  # holding the key
    "INSERT INTO jobs",              # the job row
    "INSERT INTO job_events",        # its first event, same transaction
    "DELETE FROM pending_uploads",   # settling the pending upload, same transaction
    "UPDATE idempotency_keys",       # recording the answer for the key, same transaction
])
def test_database_failure_before_commit_is_503_and_leaves_nothing(app, client, storage, step):
    before = originals(storage)
    with database_fails(app, step):
        response = submit(client)
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "dependency_unavailable"
    assert response.headers["Retry-After"]
    left_nothing(app, storage, before)
    retry = submit(client)  # the same key works at once
    assert retry.status_code == 202, retry.get_json()


def test_storage_failure_is_503_and_leaves_nothing(app, client, storage, monkeypatch):
    before = originals(storage)

    def put(*_args, **_kw):
        raise ConnectionError("S3 unreachable")

    monkeypatch.setattr(app.extensions["portraits"].storage, "put", put)
    response = submit(client)
    assert response.status_code == 503 and "storage" in response.get_json()["error"]["message"]
    left_nothing(app, storage, before)


def test_database_gone_after_the_upload_leaves_the_key_and_original_to_expire(app, client, storage, settings):
    """The database fails for the insert and for everything after it (the undo cannot run): the answer
    is 503, a retry with the key is told to wait, and the sweeper deletes the original later."""
    before = originals(storage)
    engine = app.extensions["portraits"].engine
    storage_put = app.extensions["portraits"].storage.put
    broken = []

    def put(*args, **kw):
        storage_put(*args, **kw)
        broken.append(True)  # from now on the database is gone

    def before_execute(conn, cursor, statement, parameters, context, executemany):
        if broken:
            raise OperationalError(statement, parameters, ConnectionError("server closed the connection"))

    app.extensions["portraits"].storage.put = put
    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        response = submit(client)
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
        app.extensions["portraits"].storage.put = storage_put
    assert response.status_code == 503
    assert count(app, Job) == 0
    stored = set(originals(storage)) - set(before)
    assert len(stored) == 1  # left for the sweeper: the database could not say whether a job owns it
    with app.extensions["portraits"].sessions() as s:
        assert s.scalar(select(PendingUpload.key)) == stored.pop()
    retry = submit(client)
    assert retry.status_code == 409  # the key is held until IDEMPOTENCY_LOCK_SECONDS pass...
    with app.extensions["portraits"].sessions() as s, s.begin():
        s.execute(update(IdempotencyKey).values(created_at=text("now() - interval '1 hour'")))
    assert submit(client).status_code == 202  # ...then a retry takes it over


@pytest.mark.parametrize("how", ["publish", "mark_published"])
def test_failure_after_commit_still_answers_202_with_the_job(app, client, how, monkeypatch):
    services = app.extensions["portraits"]
    if how == "publish":
        def send_task(*_args, **_kw):
            raise ConnectionError("redis unreachable")

        monkeypatch.setattr(services.celery, "send_task", send_task)
        response = submit(client)
    else:
        with database_fails(app, "enqueued_at=now()"):
            response = submit(client)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    with services.sessions() as s:
        job = s.get(Job, uuid.UUID(body["id"]))
    assert job.status.value == "queued" and job.enqueued_at is None  # the sweeper publishes it
    replay = submit(client)
    assert replay.status_code == 200 and replay.get_json()["id"] == body["id"]
    assert count(app, Job) == 1 and count(app, PendingUpload) == 0


def test_commit_whose_answer_is_lost_keeps_the_job_and_its_original(app, client, storage):
    """The COMMIT went through but the client saw an error: the undo must not delete the original of a
    job that exists, and the same key then replays the job instead of making a second one."""
    sessions = app.extensions["portraits"].sessions

    def note_job_insert(session, flush_context, instances):
        if any(isinstance(o, Job) for o in session.new):
            session.info["inserts_job"] = True

    def lost_answer(session):
        if session.info.pop("inserts_job", False):
            raise OperationalError("COMMIT", {}, ConnectionError("connection lost after commit"))

    event.listen(sessions, "before_flush", note_job_insert)
    event.listen(sessions, "after_commit", lost_answer)
    try:
        response = submit(client, key="order-9")
    finally:
        event.remove(sessions, "after_commit", lost_answer)
        event.remove(sessions, "before_flush", note_job_insert)
    assert response.status_code == 503
    with sessions() as s:
        job = s.scalar(select(Job))
    assert job is not None and storage.exists(job.input_key)
    replay = submit(client, key="order-9")
    assert replay.status_code == 200 and replay.get_json()["id"] == str(job.id)
