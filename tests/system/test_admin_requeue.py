"""An admin finds failed jobs and requeues them, one and in bulk, against the running processes. The
failures are real: the originals of queued jobs are deleted from storage before the worker reaches
them (a permanent `original_missing`), then restored."""
from __future__ import annotations

import pytest

from shared.settings import Settings
from shared.storage import Storage
from tests.imagegen import encode, synthetic_portrait
from tests.system.conftest import TILE

pytestmark = pytest.mark.system


@pytest.fixture
def stack_storage(stack) -> Storage:
    return Storage(Settings(**{k.lower(): v for k, v in stack.env.items() if k.lower() in Settings.model_fields}))


def test_admin_requeues_failed_jobs_one_and_in_bulk(partner, admin, stack_storage):
    busy = partner.client.submit(encode(synthetic_portrait(16 * TILE))).json()["id"]
    # The worker reads the next job's original while its model runs (WORKER_OVERLAP): this one, whose
    # original is read before the deletes below; the three after it wait for the model, unread.
    partner.client.submit(encode(synthetic_portrait(TILE)))
    partner.client.wait(busy, until=lambda j: j["status"] == "running")
    images = {partner.client.submit(encode(synthetic_portrait(40, seed=i))).json()["id"]: i for i in range(3)}
    keys = {o.object_name: o for o in stack_storage.client.list_objects(stack_storage.bucket, prefix="partners/",
                                                                          recursive=True)}
    originals = {job_id: next(k for k in keys if f"/jobs/{job_id}/original" in k) for job_id in images}
    saved = {job_id: stack_storage.get(key) for job_id, key in originals.items()}
    for key in originals.values():
        stack_storage.delete(key)
    partner.client.post(f"/v1/jobs/{busy}/cancel")  # let the worker reach them now
    for job_id in images:
        job = partner.client.wait(job_id)[0]
        assert job["status"] == "failed" and job["error_code"] == "original_missing", job
        assert job["attempts"] == 1  # permanent: not retried as if transient
        assert "partners/" not in job["error"] and stack_storage.bucket not in job["error"]  # no internals

    listed = admin.get("/v1/admin/jobs", params={"status": "failed", "q": "original_missing"}).json()
    assert set(images) <= {j["id"] for j in listed["jobs"]}
    detail = admin.get(f"/v1/admin/jobs/{next(iter(images))}").json()
    assert "NoSuchKey" in detail["events"][-1]["error"]  # the internal detail, for admins only

    for job_id, key in originals.items():
        stack_storage.put(key, saved[job_id], "image/png")
    single, *bulk = images
    response = admin.post(f"/v1/admin/jobs/{single}/requeue", json={"reason": "original restored", "actor": "ops"})
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert partner.client.wait(single)[0]["status"] == "succeeded"
    response = admin.post("/v1/admin/jobs/requeue", json={"reason": "originals restored", "q": "original_missing"})
    assert response.status_code == 200 and set(response.json()["requeued"]) == set(bulk)
    for job_id in bulk:
        assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    events = admin.get(f"/v1/admin/jobs/{single}").json()["events"]
    assert any(e["actor"] == "ops (key:ops)" and e["reason"] == "original restored" for e in events)
    assert admin.post(f"/v1/admin/jobs/{single}/requeue", json={}).status_code == 409  # succeeded: no
    assert partner.client.get("/v1/admin/jobs").status_code == 403  # a partner key is not an admin key
