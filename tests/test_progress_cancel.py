"""A running job reports tile progress to pollers, and a cancel stops its worker mid-upscale, both
within about a second and whatever LEASE_SECONDS is.

The worker's model pauses a fixed time per tile (tests/paced_worker.py), so a job's length is set
here in tiles x delay, never by how fast this CPU is; bounds are counted in tiles.
"""
from __future__ import annotations

import uuid

import pytest

from tests.imagegen import encode, post_image, synthetic_portrait
from tests.polling import poll
from tests.processes import PacedWorkerProcess

pytestmark = pytest.mark.e2e

TILE = 32
TILE_DELAY = 0.25  # seconds per tile: the job's clock
# A cancel is seen at the next beat (PROGRESS_INTERVAL_SECONDS = 0.5 s = 2 tiles) and acted on after
# the tile in hand: ~3 tiles. Allow 8 (2 s) for a loaded single core.
CANCEL_WITHIN_TILES = 8


@pytest.fixture(scope="module")
def paced_settings(settings):
    # The production lease (30 s): progress and cancel must not wait for lease renewals.
    return settings.model_copy(update=dict(model_tile=TILE, lease_seconds=30, progress_interval_seconds=0.5,
                                           torch_threads=1))


@pytest.fixture(scope="module")
def paced_worker(paced_settings, storage, tmp_path_factory):
    process = PacedWorkerProcess(paced_settings, tmp_path_factory.mktemp("paced") / "worker.log",
                                 tile_delay=TILE_DELAY).start()
    yield process
    process.stop()


@pytest.fixture
def paced_client(make_app, paced_settings, keys):
    from tests.conftest import authed

    app = make_app(**paced_settings.model_dump(include={"model_tile", "lease_seconds"}))
    return authed(app, keys(partner="acme")[0])


def submit(client, side: int) -> str:
    response = post_image(client, encode(synthetic_portrait(side)), "portrait.png")
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def poll_until(client, job_id, predicate, timeout=120):
    return poll(lambda: client.get(f"/v1/jobs/{job_id}").get_json(), predicate, timeout)


def test_polling_sees_tile_progress_of_a_short_job(paced_client, paced_worker):
    job_id = submit(paced_client, 4 * TILE)  # 16 tiles, ~4 s: shorter than one lease renewal (10 s)
    job, seen = poll_until(paced_client, job_id, lambda j: j["status"] in ("succeeded", "failed"))
    assert job["status"] == "succeeded", job
    partial = [j["progress"] for j in seen if j["status"] == "running" and j["progress"]]
    assert partial, "no progress was visible while running"
    assert all(0 <= p["done"] <= p["total"] == 16 for p in partial)
    # Written every 0.5 s = every 2 tiles: pollers see several distinct steps, not one at the end.
    assert len({p["done"] for p in partial if p["done"] < p["total"]}) >= 3, partial
    assert job["progress"] == {"done": 16, "total": 16}


def test_cancel_stops_a_running_job_within_a_few_tiles(paced_client, paced_worker, storage, app):
    job_id = submit(paced_client, 8 * TILE)  # 64 tiles, ~16 s
    running, _ = poll_until(paced_client, job_id, lambda j: j["status"] == "running" and j["progress"]
                            and j["progress"]["done"] >= 2)
    response = paced_client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    asked_at = response.get_json()["progress"]["done"]
    job, _ = poll_until(paced_client, job_id, lambda j: j["status"] != "running", timeout=60)
    assert job["status"] == "cancelled"
    assert job["progress"]["done"] - asked_at <= CANCEL_WITHIN_TILES, (asked_at, job["progress"])
    names = [o.object_name for o in storage.client.list_objects(storage.bucket, prefix="partners/",
                                                                recursive=True) if f"/jobs/{job_id}/" in o.object_name]
    assert len(names) == 1 and names[0].endswith("/original")  # no result was written
    from shared import lifecycle

    with app.extensions["portraits"].sessions() as s:
        events = lifecycle.events(s, uuid.UUID(job_id))
    assert [(e.from_status and e.from_status.value, e.to_status.value) for e in events][-1] == ("running", "cancelled")
    assert paced_worker.proc.poll() is None  # the worker lives on


def test_cancel_of_a_job_waiting_behind_another_is_immediate(paced_client, paced_worker):
    busy = submit(paced_client, 4 * TILE)  # the solo worker is busy with this one...
    waiting = submit(paced_client, 2 * TILE)  # ...so this one stays queued
    poll_until(paced_client, busy, lambda j: j["status"] == "running")
    response = paced_client.post(f"/v1/jobs/{waiting}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    job, _ = poll_until(paced_client, busy, lambda j: j["status"] not in ("queued", "running"))
    assert job["status"] == "succeeded"
    assert paced_client.get(f"/v1/jobs/{waiting}").get_json()["status"] == "cancelled"  # never ran
