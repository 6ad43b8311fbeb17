"""A running job reports tile progress to pollers, and a cancel stops its worker mid-upscale."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.imagegen import encode, post_image, synthetic_portrait
from tests.processes import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slow_settings(settings):
    # Small tiles and a 1 s heartbeat: a 1536-px job takes seconds and reports progress often.
    return settings.model_copy(update=dict(model_tile=64, lease_seconds=3, torch_threads=1))


@pytest.fixture(scope="module")
def slow_worker(slow_settings, storage, tmp_path_factory):
    process = WorkerProcess(slow_settings, tmp_path_factory.mktemp("slow") / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
def slow_client(make_app, slow_settings, keys):
    from tests.conftest import authed

    app = make_app(**slow_settings.model_dump(include={"model_tile", "lease_seconds"}))
    return authed(app, keys(partner="acme")[0])


def submit_big(client) -> str:
    data = encode(synthetic_portrait(1536))  # ~5 s of tiles at tile 64 on one thread
    response = post_image(client, data, "big.png")
    assert response.status_code == 202
    return response.get_json()["id"]


def poll_until(client, job_id, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").get_json()
        seen.append(job)
        if predicate(job):
            return job, seen
        time.sleep(0.05)
    pytest.fail(f"timed out; last: {seen[-1]}")


def test_polling_sees_tile_progress(slow_client, slow_worker):
    job_id = submit_big(slow_client)
    job, seen = poll_until(slow_client, job_id, lambda j: j["status"] in ("succeeded", "failed"))
    assert job["status"] == "succeeded", job
    partial = [j["progress"] for j in seen if j["status"] == "running" and j["progress"]]
    assert partial, "no progress was visible while running"
    assert all(0 <= p["done"] <= p["total"] for p in partial)
    assert any(p["done"] < p["total"] for p in partial)
    assert job["progress"]["done"] == job["progress"]["total"] >= 16


def test_cancel_stops_a_running_job(slow_client, slow_worker, storage, app):
    job_id = submit_big(slow_client)
    poll_until(slow_client, job_id, lambda j: j["status"] == "running" and j["progress"])
    response = slow_client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    job, _ = poll_until(slow_client, job_id, lambda j: j["status"] != "running", timeout=30)
    assert job["status"] == "cancelled"
    assert job["progress"]["done"] < job["progress"]["total"]  # it stopped part-way
    names = [o.object_name for o in storage.client.list_objects(storage.bucket, prefix="partners/",
                                                                recursive=True) if f"/jobs/{job_id}/" in o.object_name]
    assert len(names) == 1 and names[0].endswith("/original")
    from shared import lifecycle

    with app.extensions["portraits"].sessions() as s:
        events = lifecycle.events(s, uuid.UUID(job_id))
    assert [(e.from_status and e.from_status.value, e.to_status.value) for e in events][-1] == ("running", "cancelled")
    assert slow_worker.proc.poll() is None  # the worker lives on
