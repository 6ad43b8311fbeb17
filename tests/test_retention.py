"""Retention and erasure against the real Postgres, Redis and S3: the sweeper expires exactly the finished
jobs past RETENTION_DAYS, `DELETE /v1/jobs/<id>` erases a job's images at once (presigned URLs stop
working), a worker that writes its result after the erase leaves nothing behind, and
`portraits partners purge` erases a partner's every job and revokes its keys. Rows stay as tombstones.

The worker race is driven through `worker.pipeline.process_job` itself, with the erase run at a chosen
point of the result write (no sleeps); the model is a stand-in that repeats pixels (the ESPCN net is
not what is under test here).
"""
from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import create_engine, event, func, select, text, update

from shared import lifecycle
from shared.db import make_engine, make_session_factory
from shared.failures import failure
from shared.models import Job, JobStatus
from shared.retention import settle_seconds
from shared.storage import result_key
from shared.webhooks import WebhookDelivery
from tests.conftest import authed
from tests.fake_runtime import RepeatUpscaler, Runtime
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.test_openapi import conforms
from worker.pipeline import process_job
from worker.sweeper import SweepReport, expire_retained, sweep_once

S = JobStatus


# ---------------------------------------------------------------------------------------------- helpers
class EraseDuringResultWrite:
    """The real storage, except that `erase()` runs right before or right after the result is written."""

    def __init__(self, storage, erase, when: str):
        self.storage, self.erase, self.when = storage, erase, when

    def put(self, key, data, content_type):
        if key.endswith("result.png") and self.when == "before the result write":
            self.erase()  # the worker's write lands after the erase deleted the objects
        self.storage.put(key, data, content_type)
        if key.endswith("result.png") and self.when == "after the result write":
            self.erase()  # the erase lands between the write and the worker's succeed transition

    def __getattr__(self, name):
        return getattr(self.storage, name)


@pytest.fixture
def sessions(app):
    return app.extensions["portraits"].sessions


def submit(client, callback_url: str | None = None) -> str:
    response = post_image(client, encode(synthetic_portrait(24)),
                          form={"callback_url": callback_url} if callback_url else None)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def job_of(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, uuid.UUID(str(job_id)))


def objects(storage, job: Job) -> dict[str, bool]:
    return {"original": storage.exists(job.input_key),
            "result": storage.exists(result_key(job.partner_id, job.id))}


def run_worker(settings, sessions, storage, job_id, on_tile=None) -> str:
    return process_job(str(job_id), Runtime(settings, sessions, storage, RepeatUpscaler(on_tile)))


def finish(sessions, storage, job_id: str, to: JobStatus) -> None:
    """Claim the job and end it as `to` (a succeeded one with its result object)."""
    with sessions() as s, s.begin():
        job = lifecycle.claim(s, uuid.UUID(job_id), "w", 30)
        if to is S.SUCCEEDED:
            storage.put(result_key(job.partner_id, job.id), b"png", "image/png")
            assert lifecycle.succeed(s, job, result_key=result_key(job.partner_id, job.id), output_width=96,
                                     output_height=96)
        elif to is S.FAILED:
            lifecycle.fail_or_retry(s, job, failure("image_undecodable"), detail="test", backoff=0)
        else:
            assert lifecycle.cancel_running(s, job, "test")


def finished_days_ago(sessions, job_id: str, days: float) -> None:
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(
            finished_at=func.now() - text(f"interval '{days} days'"),
            created_at=func.now() - text(f"interval '{days + 1} days'")))


def became_tombstone_long_ago(sessions, settings, job_id) -> None:
    """As if the erase or expiry happened longer ago than the settle time."""
    with sessions() as s, s.begin():
        s.execute(update(Job).where(Job.id == uuid.UUID(str(job_id))).values(
            updated_at=func.now() - text(f"interval '{settle_seconds(settings) + 1} seconds'")))


def history(sessions, job_id) -> list[tuple]:
    with sessions() as s:
        return [(e.from_status and e.from_status.value, e.to_status.value, e.actor, e.reason)
                for e in lifecycle.events(s, uuid.UUID(str(job_id)))]


def callbacks(sessions) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(WebhookDelivery.event_type).order_by(WebhookDelivery.id)))


# --------------------------------------------------------------------------------------------- retention
def test_retention_expires_exactly_the_finished_jobs_past_it(app, client, admin_client, sessions, storage,
                                                             settings):
    from shared.queue import make_celery

    callback = "http://127.0.0.1:9/hooks"
    ids = {name: submit(client, callback) for name in
           ("old_succeeded", "old_failed", "old_cancelled", "young_succeeded", "old_queued", "old_running")}
    finish(sessions, storage, ids["old_succeeded"], S.SUCCEEDED)
    finish(sessions, storage, ids["young_succeeded"], S.SUCCEEDED)
    finish(sessions, storage, ids["old_failed"], S.FAILED)
    assert client.post(f"/v1/jobs/{ids['old_cancelled']}/cancel").status_code == 200
    with sessions() as s, s.begin():
        lifecycle.claim(s, uuid.UUID(ids["old_running"]), "w", 3600)
    for name in ("old_succeeded", "old_failed", "old_cancelled"):
        finished_days_ago(sessions, ids[name], settings.retention_days + 0.01)
    finished_days_ago(sessions, ids["young_succeeded"], settings.retention_days - 0.01)
    with sessions() as s, s.begin():  # queued and running for ages: never expired, whatever their times
        s.execute(update(Job).where(Job.id.in_([uuid.UUID(ids["old_queued"]), uuid.UUID(ids["old_running"])]))
                  .values(created_at=func.now() - text("interval '400 days'"),
                          started_at=func.now() - text("interval '400 days'")))
    sent = callbacks(sessions)

    report = sweep_once(sessions, make_celery(settings), settings, storage)

    old = {ids[n] for n in ("old_succeeded", "old_failed", "old_cancelled")}
    assert report.retention_expired == 3 and report.errors == 0, report
    for name, job_id in ids.items():
        job = job_of(sessions, job_id)
        if job_id in old:
            assert job.status is S.EXPIRED, name
            assert objects(storage, job) == {"original": False, "result": False}, name
            assert history(sessions, job_id)[-1][1:] == ("expired", None,
                                                         f"retention: finished more than "
                                                         f"{settings.retention_days} days ago")
        else:
            assert job.status in (S.SUCCEEDED, S.QUEUED, S.RUNNING), name
            assert objects(storage, job)["original"], name
    assert objects(storage, job_of(sessions, ids["young_succeeded"]))["result"]
    assert callbacks(sessions) == sent  # no callback for an expiry
    # The rows stay, without images: the partner sees the tombstone, its dimensions and times.
    shown = client.get(f"/v1/jobs/{ids['old_succeeded']}").get_json()
    assert shown["status"] == "expired" and shown["output"] == {"width": 96, "height": 96}
    assert shown["finished_at"]
    gone = client.get(f"/v1/jobs/{ids['old_succeeded']}/result")
    assert gone.status_code == 410 and gone.get_json()["error"]["code"] == "result_gone"
    assert gone.get_json()["error"]["status"] == "expired"
    conforms(app, "GET", f"/v1/jobs/{ids['old_succeeded']}/result", gone)
    listed = client.get("/v1/jobs?status=expired").get_json()["jobs"]
    assert {j["id"] for j in listed} == old
    assert admin_client.get("/v1/admin/jobs?status=expired").get_json()["total"] == 3
    requeue = admin_client.post(f"/v1/admin/jobs/{ids['old_failed']}/requeue", json={"reason": "try again"})
    assert requeue.status_code == 409  # its original is gone
    assert sweep_once(sessions, make_celery(settings), settings, storage).retention_expired == 0


def test_a_job_whose_objects_cannot_be_deleted_is_skipped_and_finished_later(app, client, sessions, storage,
                                                                             settings, caplog):
    ids = [submit(client) for _ in range(3)]
    for job_id in ids:
        finish(sessions, storage, job_id, S.SUCCEEDED)
        finished_days_ago(sessions, job_id, settings.retention_days + 1)
    stuck = job_of(sessions, ids[1])

    class Failing:
        def delete(self, key):
            if key == stuck.input_key:
                raise ConnectionError("storage refused")
            storage.delete(key)

    report = SweepReport()
    expire_retained(sessions, Failing(), settings, report)
    assert report.retention_expired == 3 and report.errors == 1
    assert all(job_of(sessions, j).status is S.EXPIRED for j in ids)
    assert objects(storage, stuck) == {"original": True, "result": True}  # the pass went on past it
    assert not any(any(objects(storage, job_of(sessions, j)).values()) for j in (ids[0], ids[2]))
    assert any(str(stuck.id) in r.getMessage() for r in caplog.records if r.name == "worker.sweeper")

    # Until the settle time has passed, the last pass leaves the tombstones alone; then it deletes what
    # is left, once.
    report = SweepReport()
    expire_retained(sessions, storage, settings, report)
    assert report.tombstones_purged == 0 and objects(storage, stuck)["original"]
    for job_id in ids:
        became_tombstone_long_ago(sessions, settings, job_id)
    report = SweepReport()
    expire_retained(sessions, storage, settings, report)
    assert report.tombstones_purged == 3 and report.errors == 0
    assert objects(storage, stuck) == {"original": False, "result": False}
    assert job_of(sessions, stuck.id).result_key is None  # nothing left to delete
    report = SweepReport()
    expire_retained(sessions, storage, settings, report)
    assert report.tombstones_purged == 0


def test_the_retention_queries_use_their_partial_indexes(app, settings):
    """Tombstones pile up for years: neither sweeper query may scan them (migration 0006)."""
    engine = make_engine(settings.database_url)
    seen = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, *_: seen.append((sql, params)))
    try:
        with make_session_factory(engine)() as s:
            lifecycle.retention_due(s, settings.retention_days)
            lifecycle.unpurged_tombstones(s, settle_seconds(settings))
        queries, plans = seen[-2:], []
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            for sql, params in queries:
                plans.append("\n".join(conn.exec_driver_sql(f"EXPLAIN {sql}", params).scalars()))
    finally:
        engine.dispose()
    assert "ix_jobs_retained_finished_at" in plans[0], plans[0]
    assert "ix_jobs_unpurged_tombstones" in plans[1], plans[1]


# ----------------------------------------------------------------------------------------------- erasure
def test_delete_erases_the_images_at_once_and_keeps_a_tombstone(app, client, keys, sessions, storage,
                                                               settings):
    job_id = submit(client, "http://127.0.0.1:9/hooks")
    assert run_worker(settings, sessions, storage, job_id) == "succeeded"
    url = client.get(f"/v1/jobs/{job_id}/result").headers["Location"]
    assert requests.get(url, timeout=30).status_code == 200
    other = authed(app, keys(partner="bravo")[0])
    assert other.delete(f"/v1/jobs/{job_id}").status_code == 404  # another partner's: unknown to it
    assert objects(storage, job_of(sessions, job_id)) == {"original": True, "result": True}
    sent = callbacks(sessions)

    response = client.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 200, response.get_json()
    conforms(app, "DELETE", f"/v1/jobs/{job_id}", response)
    tombstone = response.get_json()
    assert tombstone["status"] == "erased" and tombstone["output"] == {"width": 96, "height": 96}
    assert objects(storage, job_of(sessions, job_id)) == {"original": False, "result": False}
    assert requests.get(url, timeout=30).status_code in (403, 404)  # the URL handed out before is dead
    assert client.get(f"/v1/jobs/{job_id}").get_json() == tombstone
    gone = client.get(f"/v1/jobs/{job_id}/result")
    assert gone.status_code == 410 and gone.get_json()["error"] == {
        "code": "result_gone", "message": f"job {job_id} has no result any more: it was erased",
        "status": "erased"}
    conforms(app, "GET", f"/v1/jobs/{job_id}/result", gone)
    again = client.delete(f"/v1/jobs/{job_id}")  # idempotent: the same tombstone, no second event
    assert again.status_code == 200 and again.get_json() == tombstone
    assert history(sessions, job_id)[-1] == ("succeeded", "erased", "key:test-acme",
                                             "erased at the partner's request")
    assert [e[1] for e in history(sessions, job_id)].count("erased") == 1
    assert callbacks(sessions) == sent  # no callback for an erase
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert [j["id"] for j in client.get("/v1/jobs?status=erased").get_json()["jobs"]] == [job_id]


def test_an_erase_that_storage_interrupts_is_finished_by_a_second_delete(app, make_app, keys, sessions,
                                                                        storage):
    key = keys(partner="acme")[0]
    job_id = submit(authed(app, key))
    storage_down = authed(make_app(s3_endpoint="127.0.0.1:1"), key)

    response = storage_down.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["error"]["code"] == "dependency_unavailable"
    conforms(app, "DELETE", f"/v1/jobs/{job_id}", response)
    job = job_of(sessions, job_id)
    assert job.status is S.ERASED and objects(storage, job)["original"]  # erased, not yet deleted
    assert authed(app, key).delete(f"/v1/jobs/{job_id}").status_code == 200
    assert objects(storage, job) == {"original": False, "result": False}


def test_an_erased_queued_job_never_runs(client, sessions, storage, settings):
    job_id = submit(client)
    assert client.delete(f"/v1/jobs/{job_id}").get_json()["status"] == "erased"
    assert run_worker(settings, sessions, storage, job_id) == "skipped"  # its message is still in Redis
    job = job_of(sessions, job_id)
    assert job.status is S.ERASED and job.cancel_requested and job.finished_at is not None
    assert objects(storage, job) == {"original": False, "result": False}


def test_erasing_a_running_job_takes_it_from_its_worker(client, sessions):
    job_id = submit(client)
    with sessions() as s, s.begin():
        job = lifecycle.claim(s, uuid.UUID(job_id), "w", 30)
    assert client.delete(f"/v1/jobs/{job_id}").get_json()["status"] == "erased"
    with sessions() as s, s.begin():
        assert lifecycle.heartbeat(s, job, 30, 1, 2) is None  # the worker's next beat: "lost", it stops
        assert not lifecycle.succeed(s, job, result_key="x", output_width=1, output_height=1)
        assert lifecycle.fail_or_retry(s, job, failure("internal_error"), detail="x", backoff=0) is None
    assert job_of(sessions, job_id).status is S.ERASED


@pytest.mark.parametrize("when", ["before the result write", "after the result write", "during the upscale"])
def test_a_worker_that_writes_its_result_after_the_erase_leaves_nothing(app, client, sessions, storage,
                                                                       settings, when):
    """The worker writes the result object *before* its fenced succeed transition. An erase before that
    write would have its objects deleted, then the worker's late write would bring the result back: the
    worker, finding its transition refused and the job erased, deletes it again."""
    job_id = submit(client)
    erase = lambda *_: client.delete(f"/v1/jobs/{job_id}")  # noqa: E731
    if when == "during the upscale":
        outcome = run_worker(settings, sessions, storage, job_id, on_tile=lambda done: done == 1 and erase())
    else:
        outcome = run_worker(settings, sessions, EraseDuringResultWrite(storage, erase, when), job_id)
    assert outcome == "lost"
    job = job_of(sessions, job_id)
    assert job.status is S.ERASED and job.output_width is None
    assert objects(storage, job) == {"original": False, "result": False}
    assert [e[1] for e in history(sessions, job_id)] == ["queued", "running", "erased"]


def test_a_late_write_that_outlives_its_worker_is_deleted_by_the_sweeper(client, sessions, storage, settings):
    """A worker killed between its late write and its check leaves the object: the sweeper's last pass
    over the tombstone, once no attempt started before the erase can still write, deletes it."""
    job_id = submit(client)
    client.delete(f"/v1/jobs/{job_id}")
    job = job_of(sessions, job_id)
    storage.put(result_key(job.partner_id, job.id), b"late", "image/png")
    report = SweepReport()
    expire_retained(sessions, storage, settings, report)
    assert report.tombstones_purged == 0 and objects(storage, job)["result"]  # a worker might still write
    became_tombstone_long_ago(sessions, settings, job_id)
    report = SweepReport()
    expire_retained(sessions, storage, settings, report)
    assert report.tombstones_purged == 1 and objects(storage, job) == {"original": False, "result": False}


# ------------------------------------------------------------------------------------------------- purge
def test_purge_erases_every_job_of_the_partner_and_revokes_its_keys(app, make_app, keys, sessions, storage,
                                                                   monkeypatch):
    monkeypatch.setattr("api.cli.IN_FLIGHT_SECONDS", 0.0)  # it waits this + KEY_CACHE_SECONDS (0 below)
    acme_keys = [keys(partner="acme")[0] for _ in range(2)]
    client = authed(app, acme_keys[0])
    ids = [submit(client) for _ in range(3)]
    finish(sessions, storage, ids[0], S.SUCCEEDED)
    finish(sessions, storage, ids[1], S.FAILED)  # ids[2] stays queued
    bravo = authed(app, keys(partner="bravo")[0])
    theirs = submit(bravo)
    runner = make_app(key_cache_seconds=0).test_cli_runner()

    refused = runner.invoke(args=["partners", "purge", "acme"])
    assert refused.exit_code != 0 and "--yes" in refused.output and "3 job(s)" in refused.output
    assert client.get(f"/v1/jobs/{ids[0]}").get_json()["status"] == "succeeded"

    done = runner.invoke(args=["partners", "purge", "acme", "--yes"])
    assert done.exit_code == 0, done.output
    assert "revoked 2 key(s); erased 3 job(s)" in done.output
    for job_id in ids:
        job = job_of(sessions, job_id)
        assert job.status is S.ERASED, job_id
        assert objects(storage, job) == {"original": False, "result": False}
        assert history(sessions, job_id)[-1][2:] == ("operator-cli", "partner 'acme' purged")
    fresh = make_app()  # an API process that has not verified (and cached) the keys before the purge
    assert [authed(fresh, key).get("/v1/jobs").status_code for key in acme_keys] == [401, 401]
    assert bravo.get(f"/v1/jobs/{theirs}").get_json()["status"] == "queued"  # another partner: untouched
    assert objects(storage, job_of(sessions, theirs))["original"]
    again = runner.invoke(args=["partners", "purge", "acme", "--yes"])
    assert again.exit_code == 0 and "revoked 0 key(s); erased 0 job(s)" in again.output
    assert runner.invoke(args=["partners", "purge", "nobody", "--yes"]).exit_code != 0


# --------------------------------------------------------------------------------------------- migration
def test_migration_0006_goes_down_and_up(settings):
    """Down to 0005 the tombstones go (their status did not exist); up again the new statuses are allowed."""
    from alembic import command
    from alembic.config import Config

    from tests.database import ROOT, drop_database, fresh_database

    name = f"{settings.database_url.rsplit('/', 1)[1]}_0006"
    url = fresh_database(settings.database_url, name)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes.update(database_url=url, configure_logger=False)
    engine = create_engine(url)
    insert = ("INSERT INTO jobs (id, status, input_key, input_content_type, input_width, input_height) "
              "VALUES (:id, :status, 'k', 'image/png', 1, 1)")
    try:
        with engine.begin() as conn:
            for status in ("erased", "expired", "succeeded"):
                conn.execute(text(insert), {"id": uuid.uuid4(), "status": status})
        command.downgrade(cfg, "0005")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT status FROM jobs")).scalars().all() == ["succeeded"]
        with pytest.raises(Exception, match="ck_jobs_job_status"), engine.begin() as conn:
            conn.execute(text(insert), {"id": uuid.uuid4(), "status": "erased"})
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            conn.execute(text(insert), {"id": uuid.uuid4(), "status": "erased"})
            conn.execute(text("INSERT INTO job_events (job_id, from_status, to_status, attempt) "
                              "SELECT id, 'expired', 'erased', 0 FROM jobs WHERE status = 'erased'"))
    finally:
        engine.dispose()
        drop_database(settings.database_url, name)


def test_every_status_is_in_the_check_constraints(app, settings):
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            checks = conn.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                       "WHERE conname IN ('ck_jobs_job_status', 'ck_job_events_from_status', "
                                       "'ck_job_events_to_status')")).all()
    finally:
        engine.dispose()
    assert len(checks) == 3
    for name, definition in checks:
        assert all(f"'{s.value}'" in definition for s in JobStatus), (name, definition)
    assert {s for s in JobStatus if s.is_terminal()} == {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED,
                                                          S.ERASED}
