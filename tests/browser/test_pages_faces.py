"""The console's face picker: POST /faces (the API's POST /v1/faces for a signed-in partner), an upload
with the chosen `crop`, and a cropped job's page (its before image is the part restored). Through
Flask's test client here; in Chromium in test_pages_faces_browser.py."""
from __future__ import annotations

import io
import re
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from api.pages import messages
from tests.browser.test_pages_http import csrf_token, pages, signed_in  # noqa: F401  (pages: a fixture)
from tests.conftest import require_faces
from tests.group_photo import found, group_photo
from tests.imagegen import encode, synthetic_portrait


def post(client, path: str, data: bytes, form: dict | None = None, token: bool = True, json: bool = True):
    """A multipart POST encoded in memory (the test client would spool a large one to an unclosed file)."""
    fields = {**({"csrf_token": csrf_token(client)} if token else {}), **(form or {}),
              "image": FileStorage(io.BytesIO(data), filename="family.png")}
    boundary, body = encode_multipart(fields)
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       headers={"Accept": "application/json"} if json else {})


@pytest.mark.data
def test_the_picker_finds_each_face_and_the_upload_takes_its_crop(pages, keys):  # noqa: F811
    client, _, _ = signed_in(pages, keys, partner="acme")
    paths = require_faces()
    rgb, boxes = group_photo([paths[i] for i in (8, 88, 188)], [110, 80, 60], size=(760, 400))
    answer = post(client, "/faces", encode(rgb))
    assert answer.status_code == 200, answer.get_json()
    faces = answer.get_json()["faces"]
    assert len(faces) == 3 and all(found(box, [SimpleNamespace(**f) for f in faces]) for box in boxes), faces
    crop = faces[2]["crop"]
    field = f"{crop['x']},{crop['y']},{crop['width']},{crop['height']}"
    sent = post(client, "/jobs", encode(rgb), {"idempotency_key": f"t-{uuid.uuid4()}", "crop": field})
    assert sent.status_code == 202 and sent.get_json()["job"]["crop"] == crop
    page = client.get(sent.get_json()["url"]).get_data(as_text=True)
    assert f"{crop['width']} × {crop['height']} px at ({crop['x']}, {crop['y']})" in page
    before = client.get(sent.get_json()["url"] + "/original")
    assert before.status_code == 200 and before.mimetype == "image/png"
    region = np.asarray(Image.open(io.BytesIO(before.data)))
    x, y, w, h = crop["x"], crop["y"], crop["width"], crop["height"]
    assert np.array_equal(region, rgb[y:y + h, x:x + w])


def test_the_picker_needs_a_session_and_its_csrf_token(pages, keys):  # noqa: F811
    photo = encode(synthetic_portrait(40))
    assert post(pages.test_client(), "/faces", photo).status_code == 401  # not signed in
    client, _, _ = signed_in(pages, keys, partner="acme")
    assert post(client, "/faces", photo, token=False).status_code == 400
    answer = post(client, "/faces", encode(np.full((50, 70, 3), 128, np.uint8)))
    assert answer.status_code == 200 and answer.get_json() == {
        "image": {"width": 70, "height": 50}, "aspect": "11x14", "faces": []}
    refused = post(client, "/faces", b"just text")
    assert refused.status_code == 422 and "not a kind of picture" in refused.get_json()["error"]["plain"]


def test_a_crop_that_does_not_fit_is_explained_in_plain_words(pages, keys):  # noqa: F811
    client, _, _ = signed_in(pages, keys, partner="acme")
    form = {"idempotency_key": "t-1", "crop": "30,0,20,20"}  # 30 + 20 > 40
    page = post(client, "/jobs", encode(synthetic_portrait(40)), form, json=False)
    assert page.status_code == 422
    text = re.sub(r"\s+", " ", page.get_data(as_text=True).replace("&#39;", "'"))
    assert messages.CODES["invalid_crop"].split(":")[0] in text and "40x40 photo" in text
