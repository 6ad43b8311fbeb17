"""A portrait from a group photo, over HTTP against the Procfile's processes: POST /v1/faces finds the
people, the partner picks one face's crop, POST /v1/jobs upscales exactly that region (4x the crop),
and the signed callback carries the crop."""
from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image
from standardwebhooks.webhooks import Webhook

from tests.conftest import require_faces
from tests.group_photo import group_photo
from tests.receiver import Receiver

pytestmark = [pytest.mark.system, pytest.mark.data]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_pick_a_face_from_a_group_photo_and_restore_it(partner, other_partner, receiver):
    paths = require_faces()
    photo = jpeg(group_photo([paths[i] for i in (5, 105, 205)], [96, 72, 56], size=(700, 380))[0])
    files = {"image": ("family.jpg", photo, "image/jpeg")}

    found = partner.client.post("/v1/faces", files=files, data={"aspect": "3:4"})
    assert found.status_code == 200, found.text
    faces = found.json()["faces"]
    assert found.json()["image"] == {"width": 700, "height": 380} and len(faces) == 3, faces
    crop = faces[1]["crop"]  # the middle person
    assert abs(crop["width"] * 4 - crop["height"] * 3) <= 4  # 3:4, within a pixel

    field = f"{crop['x']},{crop['y']},{crop['width']},{crop['height']}"
    submitted = partner.client.post("/v1/jobs", files=files, data={"crop": field, "callback_url": receiver.url})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.json()["crop"] == crop and submitted.json()["input"] == {"width": 700, "height": 380}
    assert other_partner.client.get(f"/v1/jobs/{job_id}").status_code == 404

    job, _ = partner.client.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["crop"] == crop and job["output"] == {"width": 4 * crop["width"], "height": 4 * crop["height"]}
    url = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False).headers["Location"]
    with Image.open(io.BytesIO(requests.get(url, timeout=30).content)) as result:
        assert result.size == (4 * crop["width"], 4 * crop["height"])

    (headers, body), = receiver.wait_for(1)
    event = Webhook(partner.secret).verify(body, headers)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["crop"] == crop and event["data"]["output"] == job["output"]
