"""Retention by the running sweeper process: a finished job older than RETENTION_DAYS is expired, its
original and result deleted, its presigned URL dead, the row kept. Its age is set in the stack's
database (nothing else touches it), then only HTTP and the sweeper act."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.imagegen import encode, synthetic_portrait
from tests.polling import poll

pytestmark = pytest.mark.system


def test_the_sweeper_expires_portraits_past_retention(stack, partner):
    job_id = partner.client.submit(encode(synthetic_portrait(40, seed=11))).json()["id"]
    assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    url = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False).headers["Location"]
    assert requests.get(url, timeout=30).status_code == 200

    days = int(stack.env.get("RETENTION_DAYS", "30"))
    engine = create_engine(stack.env["DATABASE_URL"])
    try:
        with engine.begin() as conn:  # finished long ago, as far as the sweeper can tell
            conn.execute(text(f"UPDATE jobs SET finished_at = now() - interval '{days + 1} days' WHERE id = :id"),
                         {"id": job_id})
    finally:
        engine.dispose()

    job, _ = partner.client.wait(job_id, until=lambda j: j["status"] == "expired", timeout=60)
    assert job["output"] is not None  # the row keeps its dimensions, not the pictures
    # The sweeper commits the tombstone first and deletes the objects right after (shared/retention.py),
    # so a poll can see `expired` a moment before the URL dies.
    poll(lambda: requests.get(url, timeout=30).status_code, lambda status: status in (403, 404), timeout=30)
    result = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False)
    assert result.status_code == 410 and result.json()["error"]["code"] == "result_gone"
