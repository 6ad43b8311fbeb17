"""POST /v1/jobs `crop`: parsed (400 when malformed), checked against the photo as shown (422 when empty
or outside it, after EXIF orientation), recorded on the job and shown with it, part of the idempotent
request; a real worker upscales exactly that region to exactly 4x."""
from __future__ import annotations

import io
import time
import uuid

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from model.crop import Crop, CropError, apply_crop, check_crop, parse_crop
from model.images import decode_image
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.processes import WorkerProcess


def exif_rotated(upright: np.ndarray, orientation: int = 6) -> bytes:
    """A PNG storing `upright` turned a quarter, with the EXIF orientation that turns it back."""
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # orientation 6 = turn 90° clockwise to show
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "PNG", exif=exif)
    assert decode_image(buf.getvalue()).shape == upright.shape
    return buf.getvalue()


def submit(client, data: bytes, crop: str | None = None, key: str | None = None):
    return post_image(client, data, form={"crop": crop} if crop is not None else None,
                      headers={"Idempotency-Key": key} if key else None)


# ------------------------------------------------------------------------------------ model/crop.py
def test_parse_and_check():
    assert parse_crop("1,2,3,4") == Crop(1, 2, 3, 4) and str(parse_crop(" 10 , 0,7 ,8 ")) == "10,0,7,8"
    assert parse_crop("-5,0,10,10") == Crop(-5, 0, 10, 10)  # well-formed; outside the photo (checked next)
    for bad in ("", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1.5,2,3,4", "1;2;3;4", "1,2,3,4" + " " * 100, None,
                "1e3,0,1,1"):
        with pytest.raises(ValueError, match="x,y,width,height"):
            parse_crop(bad)
    check_crop(Crop(0, 0, 60, 40), (60, 40))
    for crop, reason in ((Crop(0, 0, 0, 5), "empty"), (Crop(0, 0, 5, -1), "empty"),
                         (Crop(-1, 0, 5, 5), "outside_image"), (Crop(56, 0, 5, 5), "outside_image"),
                         (Crop(0, 36, 5, 5), "outside_image")):
        with pytest.raises(CropError) as caught:
            check_crop(crop, (60, 40))
        assert caught.value.reason == reason
    pixels = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    region = apply_crop(pixels, (5, 6, 7, 8))
    assert region.shape == (8, 7, 3) and np.array_equal(region, pixels[6:14, 5:12]) and region.base is None
    assert apply_crop(pixels, None) is pixels


# ------------------------------------------------------------------------------------------- the API
def test_crop_is_recorded_shown_and_private(client, app, keys):
    response = submit(client, encode(synthetic_portrait(64)), "8,4,40,48")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    crop = {"x": 8, "y": 4, "width": 40, "height": 48}
    assert job["crop"] == crop and job["input"] == {"width": 64, "height": 64} and job["output"] is None
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["crop"] == crop
    assert [j["crop"] for j in client.get("/v1/jobs").get_json()["jobs"]] == [crop]
    plain = submit(client, encode(synthetic_portrait(64)), "").get_json()  # blank: the whole photo
    assert plain["crop"] is None
    other = authed(app, keys(partner="other")[0])
    assert other.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert other.get("/v1/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize("crop", ["1,2,3", "x,y,w,h", "1,2,3,4,5", "10;10;5;5", "1.5,0,4,4", "9" * 200])
def test_malformed_crop_is_400(client, crop):
    response = submit(client, encode(synthetic_portrait(64)), crop)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", "crop")
    assert "x,y,width,height" in error["message"]


@pytest.mark.parametrize("crop, reason", [("0,0,0,10", "empty"), ("0,0,10,-3", "empty"),
                                          ("-1,0,10,10", "outside_image"), ("60,0,5,10", "outside_image"),
                                          ("0,0,64,65", "outside_image")])
def test_crop_that_does_not_fit_is_422_and_leaves_nothing(client, app, crop, reason):
    response = submit(client, encode(synthetic_portrait(64)), crop)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error["field"], error["reason"]) == ("invalid_crop", "crop", reason)
    assert crop in error["message"] and ("64x64" in error["message"] or reason == "empty")
    with app.extensions["portraits"].sessions() as session:
        assert session.execute(text("SELECT count(*) FROM jobs")).scalar() == 0


def test_crop_is_in_the_pixels_as_shown_after_exif_orientation(client):
    data = exif_rotated(synthetic_portrait(60)[:40])  # shown 60 wide x 40 tall; stored 40 x 60
    assert submit(client, data, "50,0,10,40").status_code == 202  # fits only the photo as shown
    refused = submit(client, data, "0,50,40,10")  # fits only the stored pixels
    assert refused.status_code == 422 and "60x40" in refused.get_json()["error"]["message"]


def test_idempotency_key_covers_the_crop(client):
    photo = encode(synthetic_portrait(64))
    first = submit(client, photo, "0,0,32,32", key="order-1")
    assert first.status_code == 202
    replay = submit(client, photo, " 0, 0,32,32", key="order-1")  # the same crop, spelt otherwise
    assert replay.status_code == 200 and replay.get_json() == first.get_json()
    for other in ("0,0,32,33", None):
        conflict = submit(client, photo, other, key="order-1")
        assert conflict.status_code == 422 and conflict.get_json()["error"]["code"] == "idempotency_conflict"
    assert submit(client, photo, key="order-2").status_code == 202  # without a crop, as before
    assert submit(client, photo, "0,0,32,32", key="order-2").status_code == 422


def test_the_database_refuses_a_partial_or_empty_crop(app, keys):
    """The CHECK constraint of migration 0007: all four columns or none, never an empty box."""
    partner = keys(partner="acme")[1]
    for values in ("1, 1, 5, NULL", "0, 0, 0, 5", "-1, 0, 5, 5"):
        with pytest.raises(IntegrityError, match="ck_jobs_crop"):
            with app.extensions["portraits"].engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO jobs (id, status, partner_id, input_key, input_content_type, input_width, "
                    f"input_height, crop_x, crop_y, crop_width, crop_height) VALUES ('{uuid.uuid4()}', "
                    f"'queued', '{partner.id}', 'k', 'image/png', 9, 9, {values})"))


# ---------------------------------------------------------------------------------- a real worker
@pytest.fixture(scope="module")
def worker(settings, storage, tmp_path_factory):
    process = WorkerProcess(settings, tmp_path_factory.mktemp("worker") / "worker.log", name="crop").start()
    yield process
    process.stop()


def result_of(client, job_id: str, worker, timeout: float = 120) -> tuple[dict, np.ndarray]:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/v1/jobs/{job_id}").get_json())["status"] in ("queued", "running"):
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    url = client.get(f"/v1/jobs/{job_id}/result").headers["Location"]
    return job, np.asarray(Image.open(io.BytesIO(requests.get(url, timeout=10).content)))


@pytest.mark.e2e
def test_worker_upscales_exactly_the_crop(client, settings, worker):
    """The result is 4x the crop, and is the crop's region upscaled (as shown: EXIF orientation applied)."""
    from model import Upscaler

    upright = synthetic_portrait(96, seed=3)[:72]  # shown 96 x 72
    job = submit(client, exif_rotated(upright), "20,8,52,60").get_json()
    job, result = result_of(client, job["id"], worker)
    assert job["output"] == {"width": 208, "height": 240} and result.shape == (240, 208, 3)
    assert job["crop"] == {"x": 20, "y": 8, "width": 52, "height": 60}
    upscaler = Upscaler.from_weights(settings.model_weights, device="cpu", tile=settings.model_tile)
    expected = upscaler.upscale(upright[8:68, 20:72])
    difference = np.abs(result.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01, (difference.max(), difference.mean())
