"""`GET /v1/jobs`: a partner's own jobs, newest first, filtered by status, in keyset pages (real Postgres)."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from shared.models import Job, JobStatus
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)


def add_jobs(app, partner, minutes: list[int], status: JobStatus = JobStatus.QUEUED) -> list[str]:
    """Jobs of `partner` created at T0 + each number of minutes (equal numbers: equal times); their ids."""
    ids = []
    with app.extensions["portraits"].sessions() as session, session.begin():
        for minute in minutes:
            job = Job(id=uuid.uuid4(), status=status, partner_id=partner.id,
                      created_at=T0 + timedelta(minutes=minute), input_key="partners/x/jobs/y/original",
                      input_content_type="image/png", input_width=32, input_height=32)
            session.add(job)
            ids.append(str(job.id))
    return ids


def newest_first(app, ids: list[str]) -> list[str]:
    """`ids` in the order the listing promises: created_at descending, then id descending (as Postgres
    orders uuids)."""
    with app.extensions["portraits"].sessions() as session:
        rows = session.execute(text("SELECT id::text FROM jobs WHERE id::text = ANY(:ids) "
                                    "ORDER BY created_at DESC, id DESC"), {"ids": ids}).scalars()
        return list(rows)


def listed(client, query: str = "") -> list[str]:
    response = client.get(f"/v1/jobs{query}")
    assert response.status_code == 200, response.get_json()
    return [job["id"] for job in response.get_json()["jobs"]]


def every_page(client, query: str) -> tuple[list[str], int]:
    """Follow next_cursor to the end: (ids in order, number of pages)."""
    ids, pages, cursor = [], 0, None
    while True:
        response = client.get(f"/v1/jobs?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.get_json()
        body, pages = response.get_json(), pages + 1
        ids += [job["id"] for job in body["jobs"]]
        if body["next_cursor"] is None:
            return ids, pages
        cursor = body["next_cursor"]


@pytest.fixture
def partners(app, keys):
    """Two partners' clients and rows: {"acme": (client, partner), "bravo": (client, partner)}."""
    made = {name: keys(partner=name) for name in ("acme", "bravo")}
    return {name: (authed(app, key), partner) for name, (key, partner) in made.items()}


def test_newest_first_and_only_the_partners_own(app, partners):
    (acme, acme_row), (bravo, bravo_row) = partners["acme"], partners["bravo"]
    mine = add_jobs(app, acme_row, [0, 5, 5, 5, 9, 2])  # three at the same time: id breaks the tie
    theirs = add_jobs(app, bravo_row, [1, 6, 10])
    response = acme.get("/v1/jobs")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert [job["id"] for job in body["jobs"]] == newest_first(app, mine) and body["next_cursor"] is None
    assert [job["created_at"] for job in body["jobs"]][:2] == [(T0 + timedelta(minutes=m)).isoformat()
                                                               for m in (9, 5)]
    assert body["jobs"][0]["status"] == "queued" and body["jobs"][0]["input"] == {"width": 32, "height": 32}
    assert listed(bravo) == newest_first(app, theirs)


def test_jobs_submitted_through_the_api_are_listed_newest_first(client):
    ids = []
    for size in (24, 32, 40):
        response = post_image(client, encode(synthetic_portrait(size)))
        assert response.status_code == 202
        ids.append(response.get_json()["id"])
    assert listed(client) == ids[::-1]


def test_status_filter(app, partners):
    (acme, acme_row), (_, bravo_row) = partners["acme"], partners["bravo"]
    queued = add_jobs(app, acme_row, [0, 3])
    failed = add_jobs(app, acme_row, [1, 2, 4], JobStatus.FAILED)
    add_jobs(app, bravo_row, [5], JobStatus.FAILED)
    assert listed(acme, "?status=failed") == newest_first(app, failed)
    assert listed(acme, "?status=queued") == newest_first(app, queued)
    assert listed(acme, "?status=cancelled") == []
    assert every_page(acme, "status=failed&limit=2") == (newest_first(app, failed), 2)


def test_pages_return_every_job_once_while_new_jobs_arrive(app, partners):
    (acme, acme_row), (_, bravo_row) = partners["acme"], partners["bravo"]
    # Seven jobs, four of them at one instant, so page boundaries fall inside the tie.
    old = newest_first(app, add_jobs(app, acme_row, [0, 1, 1, 1, 1, 2, 3]))
    add_jobs(app, bravo_row, [1, 1, 2])
    first = acme.get("/v1/jobs?limit=3").get_json()
    assert [job["id"] for job in first["jobs"]] == old[:3] and first["next_cursor"]
    new = add_jobs(app, acme_row, [60])  # submitted between pages: newer than every page to come
    ids, cursor = [job["id"] for job in first["jobs"]], first["next_cursor"]
    while cursor:
        body = acme.get(f"/v1/jobs?limit=3&cursor={cursor}").get_json()
        ids += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        add_jobs(app, acme_row, [61])  # and more while paging
    assert ids == old  # each exactly once, in order, nothing else
    latest, pages = every_page(acme, "limit=2")
    assert len(latest) == 10 and latest[2:] == new + old  # two [61] jobs first
    assert pages == 5  # 10 jobs in pages of 2: no empty last page


def test_limit_default_and_bounds(app, partners):
    acme, acme_row = partners["acme"]
    ids = newest_first(app, add_jobs(app, acme_row, list(range(25))))
    body = acme.get("/v1/jobs").get_json()
    assert [job["id"] for job in body["jobs"]] == ids[:20] and body["next_cursor"]
    assert listed(acme, "?limit=1") == ids[:1]
    assert listed(acme, "?limit=100") == ids


def test_keys_other_than_a_partners_are_refused(app, admin_client):
    assert admin_client.get("/v1/jobs").status_code == 403
    anonymous = app.test_client().get("/v1/jobs")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def tampered(cursor: str) -> str:
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1:]


def test_bad_parameters_are_400_naming_the_field(app, partners):
    acme, acme_row = partners["acme"]
    add_jobs(app, acme_row, [0, 1, 2])
    cursor = acme.get("/v1/jobs?limit=1").get_json()["next_cursor"]
    forged = base64.urlsafe_b64encode(f"{T0.isoformat()}|{uuid.uuid4()}".encode()).decode()  # no checksum
    cases = {"status=nope": "status", "status=QUEUED": "status", "status=%00": "status", "limit=0": "limit",
             "limit=101": "limit", "limit=x": "limit", "limit=1.5": "limit", "cursor=garbage!": "cursor",
             "cursor=abc": "cursor", f"cursor={tampered(cursor)}": "cursor", f"cursor={forged}": "cursor",
             f"cursor={cursor}%00": "cursor", f"cursor={'A' * 300}": "cursor"}
    for query, field in cases.items():
        response = acme.get(f"/v1/jobs?{query}")
        assert response.status_code == 400, (query, response.status_code)
        error = response.get_json()["error"]
        assert (error["code"], error["field"]) == ("invalid_request", field), query
        assert field in error["message"], error
    assert acme.get(f"/v1/jobs?cursor={cursor}").status_code == 200


def test_listing_has_the_default_rate_limit(make_app, keys):
    limited = authed(make_app(rate_limit_default="2/minute"), keys(partner="acme")[0])
    assert [limited.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]
    response = limited.get("/v1/jobs")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


def test_the_index_serves_the_listing_and_matches_the_metadata(app, partners, settings):
    """Migrations and Job.__table_args__ declare the same index, and a page is one index scan: no sort."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared.models import Base

    acme_row = partners["acme"][1]
    add_jobs(app, acme_row, list(range(50)))
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert [d for d in diffs if "ix_jobs_partner_id_created_at_id" in repr(d)] == []
            conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(conn.execute(text(
                "EXPLAIN SELECT * FROM jobs WHERE partner_id = :p AND (created_at, id) < (:t, :i) "
                "ORDER BY created_at DESC, id DESC LIMIT 21"),
                {"p": acme_row.id, "t": T0 + timedelta(minutes=30), "i": uuid.uuid4()}).scalars())
    finally:
        engine.dispose()
    assert "ix_jobs_partner_id_created_at_id" in plan and "Sort" not in plan, plan
