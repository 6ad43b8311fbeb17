"""Erasure over HTTP against the Procfile's processes: a partner erases a finished job and the presigned
URL it was given stops working; erasing a running job stops it and its worker goes on to the next."""
from __future__ import annotations

import pytest
import requests

from tests.imagegen import encode, synthetic_portrait
from tests.polling import poll
from tests.system.conftest import TILE

pytestmark = pytest.mark.system


def portrait(side: int, seed: int = 0) -> bytes:
    return encode(synthetic_portrait(side, seed))


def delete(client, path: str) -> requests.Response:
    return client.http.delete(client.url + path, timeout=30)


def test_erase_a_finished_job(partner, other_partner, admin):
    job_id = partner.client.submit(portrait(48, seed=7)).json()["id"]
    assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    url = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False).headers["Location"]
    assert requests.get(url, timeout=30).status_code == 200
    assert delete(other_partner.client, f"/v1/jobs/{job_id}").status_code == 404  # not theirs to erase

    response = delete(partner.client, f"/v1/jobs/{job_id}")

    assert response.status_code == 200, response.text
    tombstone = response.json()
    assert tombstone["status"] == "erased" and tombstone["output"] == {"width": 192, "height": 192}
    assert requests.get(url, timeout=30).status_code in (403, 404)  # the image is gone from storage
    assert partner.client.get(f"/v1/jobs/{job_id}").json() == tombstone
    result = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False)
    assert result.status_code == 410 and result.json()["error"]["code"] == "result_gone"
    again = delete(partner.client, f"/v1/jobs/{job_id}")
    assert again.status_code == 200 and again.json() == tombstone
    events = admin.get(f"/v1/admin/jobs/{job_id}").json()["events"]
    assert [(e["from"], e["to"]) for e in events][-1] == ("succeeded", "erased")
    assert events[-1]["actor"] == "key:Eternal Memories-default"


def test_erase_a_running_job(partner, stack):
    job_id = partner.client.submit(portrait(16 * TILE, seed=8)).json()["id"]  # 256 tiles, ~10 s
    partner.client.wait(job_id, until=lambda j: j["status"] == "running"
                        and (j["progress"] or {}).get("done", 0) >= 2)

    response = delete(partner.client, f"/v1/jobs/{job_id}")

    assert response.status_code == 200 and response.json()["status"] == "erased"
    # The worker notices at its next heartbeat and stops between tiles; the next job runs on it, and the
    # erased job never becomes anything else.
    poll(stack.log, lambda log: f"job {job_id} attempt 1 stopped: it is no longer ours" in log, timeout=60,
         interval=0.2)
    following = partner.client.submit(portrait(32, seed=9)).json()["id"]
    assert partner.client.wait(following)[0]["status"] == "succeeded"
    job = partner.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "erased" and job["output"] is None and job["cancel_requested"] is True
    assert partner.client.get(f"/v1/jobs/{job_id}/result").status_code == 410
