"""POST /v1/faces: every face of a composed group photo found, each with a portrait crop inside the photo;
the upload checks of POST /v1/jobs; nothing stored; EXIF orientation; auth and rate limit."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.test import encode_multipart

from shared.models import Job
from tests.conftest import authed, require_faces
from tests.group_photo import found, group_photo
from tests.imagegen import encode, post_image, synthetic_portrait

WIDTHS = [150, 110, 80, 56]  # four people, the nearest to the camera first


def post_faces(client, data: bytes | None, form: dict | None = None, name: str = "group.jpg"):
    if data is None:  # no file at all
        boundary, body = encode_multipart(dict(form or {}))
        return client.post("/v1/faces", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    return post_image(client, data, name, form=form, path="/v1/faces")


def jpeg(rgb: np.ndarray, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


@pytest.fixture(scope="module")
def group():
    paths = require_faces()
    return group_photo([paths[i] for i in (21, 232, 343, 454)], WIDTHS)


def objects(storage) -> int:
    return sum(1 for _ in storage.client.list_objects(storage.bucket, recursive=True))


def check_crop_frames_face(crop: dict, face: dict, size: dict, aspect: tuple[int, int]):
    x, y, w, h = crop["x"], crop["y"], crop["width"], crop["height"]
    assert x >= 0 and y >= 0 and x + w <= size["width"] and y + h <= size["height"], (crop, size)
    assert abs(w - h * aspect[0] / aspect[1]) <= 1, f"{crop} is not {aspect}"
    assert x <= face["x"] + 1 and y <= face["y"] + 1, (crop, face)
    assert x + w >= face["x"] + face["width"] - 1 and y + h >= face["y"] + face["height"] - 1, (crop, face)
    assert h > face["height"] * 1.5  # head and shoulders, not just the face


@pytest.mark.data
def test_every_face_of_a_group_photo_is_found_with_a_portrait_crop(client, app, storage, group):
    rgb, boxes = group
    before = objects(storage)
    response = post_faces(client, jpeg(rgb))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["image"] == {"width": rgb.shape[1], "height": rgb.shape[0]} and body["aspect"] == "11x14"
    faces = body["faces"]
    dets = [SimpleNamespace(**f) for f in faces]
    missed = [w for w, box in zip(WIDTHS, boxes) if not found(box, dets)]
    assert not missed, f"faces {missed} px wide not found in {faces}"
    assert len(faces) <= len(boxes) + 1, faces
    assert [f["x"] for f in faces] == sorted(f["x"] for f in faces)  # left to right
    for face in faces:
        assert 0.8 <= face["confidence"] <= 1
        check_crop_frames_face(face["crop"], face, body["image"], (11, 14))
    # Another print aspect: the same faces, other crops.
    other = post_faces(client, jpeg(rgb), form={"aspect": "3:4"}).get_json()
    assert [f["x"] for f in other["faces"]] == [f["x"] for f in faces] and other["aspect"] == "3:4"
    for face in other["faces"]:
        check_crop_frames_face(face["crop"], face, other["image"], (3, 4))
    # Nothing was kept: no job, no object.
    with app.extensions["portraits"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert objects(storage) == before


@pytest.mark.data
def test_boxes_and_crops_are_in_the_photo_as_shown_after_exif_orientation(client, group):
    """The file stores the photo turned a quarter; its EXIF orientation (6) turns it back. The answer is
    in the pixels the partner sees, and its crop is one POST /v1/jobs accepts for that file."""
    rgb, boxes = group
    data = jpeg(np.ascontiguousarray(np.rot90(rgb, k=1)), orientation=6)
    body = post_faces(client, data).get_json()
    assert body["image"] == {"width": rgb.shape[1], "height": rgb.shape[0]}
    dets = [SimpleNamespace(**f) for f in body["faces"]]
    assert all(found(box, dets) for box in boxes), body["faces"]
    crop = body["faces"][0]["crop"]
    form = {"crop": f"{crop['x']},{crop['y']},{crop['width']},{crop['height']}"}
    submitted = post_image(client, data, "group.jpg", form=form)
    assert submitted.status_code == 202, submitted.get_json()
    assert submitted.get_json()["crop"] == crop


def test_a_photo_without_faces_has_none(client):
    response = post_faces(client, encode(np.full((300, 400, 3), 128, np.uint8)), name="wall.png")
    assert response.status_code == 200 and response.get_json() == {
        "image": {"width": 400, "height": 300}, "aspect": "11x14", "faces": []}


def test_refusals_are_those_of_a_job_upload(client, make_app, keys):
    def error(response, status):
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]

    assert error(post_faces(client, None), 400)["field"] == "image"
    assert error(post_faces(client, b""), 400)["code"] == "invalid_upload"
    refused = error(post_faces(client, b"<html><body>hello</body></html>", name="x.jpg"), 422)
    assert (refused["code"], refused["field"]) == ("invalid_image", "image")
    assert refused["reason"] == "unsupported_format"
    damaged = error(post_faces(client, encode(synthetic_portrait(64))[:200]), 422)
    assert damaged["reason"] in ("damaged", "unreadable")
    bad_aspect = error(post_faces(client, encode(synthetic_portrait(64)), form={"aspect": "16:9"}), 400)
    assert bad_aspect["field"] == "aspect" and "11x14" in bad_aspect["message"]
    small = authed(make_app(max_input_pixels=50 * 50), keys(partner="acme")[0])
    assert error(post_faces(small, encode(synthetic_portrait(64))), 422)["reason"] == "too_many_pixels"


def test_no_result_limit_applies_since_nothing_is_upscaled(make_app, keys):
    """A group photo whose whole 4x result is over MAX_OUTPUT_PIXELS can still be looked at, and a crop
    of it submitted: the limit applies to the crop's result."""
    client = authed(make_app(max_output_pixels=16 * 100 * 100), keys(partner="acme")[0])
    photo = encode(synthetic_portrait(160))
    assert post_faces(client, photo).status_code == 200
    whole = post_image(client, photo)
    assert whole.status_code == 422 and whole.get_json()["error"]["reason"] == "result_too_large"
    assert post_image(client, photo, form={"crop": "10,10,100,100"}).status_code == 202
    over = post_image(client, photo, form={"crop": "0,0,101,100"})
    assert over.status_code == 422, over.get_json()
    error = over.get_json()["error"]
    assert (error["code"], error["field"], error["reason"], error["limit"]) == (
        "invalid_crop", "crop", "result_too_large", 160_000)


def test_keys_and_rate_limit(app, make_app, keys):
    photo = encode(synthetic_portrait(32))
    assert post_faces(app.test_client(), photo).status_code == 401
    assert post_faces(authed(app, keys(admin=True)[0]), photo).status_code == 403
    limited = authed(make_app(rate_limit_submit="2/minute"), keys(partner="acme")[0])
    assert [post_faces(limited, photo).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("decoder, said", [("segfaults", "crashed"), ("hangs", "did not finish")])
def test_a_decoder_that_crashes_or_hangs_fails_the_request_not_the_api(make_app, keys, monkeypatch, decoder,
                                                                       said):
    """POST /v1/faces decodes in a throwaway child (worker/decode_guard.py): a crash or a hang there is a
    422 for that upload, and the next request is served by the same process as before."""
    from api import uploads
    from tests.hostile import decoders

    client = authed(make_app(decode_timeout_seconds=2), keys(partner="acme")[0])
    photo = encode(synthetic_portrait(40))
    with monkeypatch.context() as patch:
        patch.setattr(uploads, "PHOTO_DECODER", getattr(decoders, decoder))
        refused = post_faces(client, photo)
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert (error["code"], error["field"], error["reason"]) == ("invalid_image", "image", "damaged")
    assert said in error["message"]
    assert post_faces(client, photo).status_code == 200
