"""A partner's whole journey over HTTP against the Procfile's processes: submit, poll (also across a
Postgres restart of the API's connections), progress, download, cancel (queued and running), idempotent
replay, the partner's own job list."""
from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from tests.database import terminate_backends
from tests.imagegen import encode, synthetic_portrait
from tests.system.conftest import TILE

pytestmark = pytest.mark.system


def portrait(side: int, seed: int = 0) -> bytes:
    return encode(synthetic_portrait(side, seed))


def test_submit_poll_and_download_a_4x_png(partner, other_partner):
    response = partner.client.submit(portrait(64))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["Location"].endswith(f"/v1/jobs/{job_id}")
    job, _ = partner.client.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["output"] == {"width": 256, "height": 256} and job["error"] is None and job["error_code"] is None
    result = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False)
    assert result.status_code == 302
    download = requests.get(result.headers["Location"], timeout=30)
    assert download.status_code == 200 and download.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (256, 256)
    # Another partner cannot see it or its result, not even that it exists.
    assert other_partner.client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert other_partner.client.get(f"/v1/jobs/{job_id}/result").status_code == 404


def test_a_long_poll_answers_with_the_final_job(stack, partner):
    from tests.system.test_metrics import scrape, value

    before = scrape(f"{stack.url}/metrics")
    job_id = partner.client.submit(portrait(16 * TILE)).json()["id"]  # 256 tiles, ~10 s: still running at the poll
    answers = []
    while not answers or answers[-1][1] in ("queued", "running"):
        assert len(answers) < 10, answers
        response = partner.client.get(f"/v1/jobs/{job_id}?wait=20")
        assert response.status_code == 200, response.text
        answers.append((response.headers.get("Portraits-Wait"), response.json()["status"]))
    assert answers[-1] == ("final", "succeeded"), answers
    after = scrape(f"{stack.url}/metrics")
    assert value(after, "portraits_api_long_polls_total", outcome="final") > \
        value(before, "portraits_api_long_polls_total", outcome="final")
    # The API process learnt of the success from the worker's transition (Postgres NOTIFY), not a recheck.
    assert value(after, "portraits_api_long_poll_wakeups_total") > value(before, "portraits_api_long_poll_wakeups_total")


def test_polls_go_on_when_postgres_drops_the_apis_connections(stack, partner):
    """As after a Postgres restart: every connection the API processes read with is terminated, and the
    next polls still answer (api/db.py has no pre-ping; it runs the statement again on a new one)."""
    job_id = partner.client.submit(portrait(64, seed=5)).json()["id"]
    assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    for _ in range(6):  # the gunicorn workers' read pools hold connections now
        assert partner.client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert terminate_backends(stack.env["DATABASE_URL"], "application_name = 'portraits-api-reads'") >= 1
    for _ in range(6):
        response = partner.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text


def test_jobs_go_on_when_postgres_drops_the_workers_connections(stack, partner):
    """As after a Postgres restart: every connection the worker holds is terminated between two jobs,
    and the next job still succeeds at its first attempt. Its pool pre-pings each checkout, also for
    the statements it runs in autocommit (the read, the claim, the success: worker/pipeline.py)."""
    first = partner.client.submit(portrait(64, seed=6)).json()["id"]
    assert partner.client.wait(first)[0]["status"] == "succeeded"
    logged = len(stack.process_log("worker"))
    assert terminate_backends(stack.env["DATABASE_URL"], "application_name = 'portraits-worker'") >= 1
    job_id = partner.client.submit(portrait(64, seed=7)).json()["id"]
    job, _ = partner.client.wait(job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    since = stack.process_log("worker")[logged:]
    # Not even a failed delivery that Celery or the sweeper had to make good later.
    assert "ERROR" not in since and "Traceback" not in since, since


def test_progress_is_visible_while_running(partner):
    job_id = partner.client.submit(portrait(8 * TILE)).json()["id"]  # 64 tiles, ~2.6 s
    job, seen = partner.client.wait(job_id)
    assert job["status"] == "succeeded"
    steps = {j["progress"]["done"] for j in seen if j["status"] == "running" and j["progress"]}
    assert len(steps - {64}) >= 3, f"too few progress steps seen while running: {sorted(steps)}"
    assert job["progress"] == {"done": 64, "total": 64}


def test_cancel_a_running_job(partner):
    job_id = partner.client.submit(portrait(16 * TILE)).json()["id"]  # 256 tiles, ~10 s
    partner.client.wait(job_id, until=lambda j: j["status"] == "running" and (j["progress"] or {}).get("done", 0) >= 2)
    response = partner.client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    job, _ = partner.client.wait(job_id)
    assert job["status"] == "cancelled" and job["progress"]["done"] < job["progress"]["total"]
    result = partner.client.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 409 and result.json()["error"]["code"] == "result_not_ready"
    assert partner.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409  # already finished


def test_cancel_a_queued_job(partner):
    busy = partner.client.submit(portrait(16 * TILE)).json()["id"]
    partner.client.wait(busy, until=lambda j: j["status"] == "running")
    waiting = partner.client.submit(portrait(48)).json()["id"]  # behind `busy` on the only worker
    response = partner.client.post(f"/v1/jobs/{waiting}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    partner.client.post(f"/v1/jobs/{busy}/cancel")
    assert partner.client.wait(busy)[0]["status"] == "cancelled"
    job = partner.client.get(f"/v1/jobs/{waiting}").json()
    assert job["status"] == "cancelled" and job["started_at"] is None  # it never ran


def test_idempotent_submit_replays_the_same_job(partner):
    headers = {"Idempotency-Key": "order-42"}
    first = partner.client.submit(portrait(40, seed=1), headers=headers)
    assert first.status_code == 202
    replay = partner.client.submit(portrait(40, seed=1), headers=headers)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    other = partner.client.submit(portrait(40, seed=2), headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_conflict"
    assert partner.client.wait(first.json()["id"])[0]["status"] == "succeeded"


def test_a_partner_lists_its_own_jobs_newest_first(partner, other_partner):
    mine = [other_partner.client.submit(portrait(32, seed=i)).json()["id"] for i in range(3)]
    for job_id in mine:
        other_partner.client.wait(job_id)
    page = other_partner.client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == mine[::-1][:2] and page["next_cursor"]
    rest = other_partner.client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [mine[0]] and rest["next_cursor"] is None
    succeeded = other_partner.client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert {j["id"] for j in succeeded} == set(mine)
    theirs = {j["id"] for j in partner.client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]}
    assert theirs and not theirs & set(mine)
