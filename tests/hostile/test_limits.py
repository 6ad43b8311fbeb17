"""Upload limits from settings: body size (413), input and output pixels, accepted formats, animations,
decompression-bomb warnings; and a seeded fuzz of the upload check itself (never anything but a 4xx)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from pydantic import ValidationError
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from api.uploads import read_upload
from shared.errors import InvalidImage, InvalidUpload
from shared.settings import Settings
from tests.conftest import authed
from tests.hostile.corpus import build, pil, png_raw, rgb
from tests.imagegen import post_image


def error_of(response) -> dict:
    body = response.get_json()
    assert isinstance(body, dict) and "error" in body, response.data[:200]
    return body["error"]


def test_settings_defaults_and_validation():
    s = Settings()
    assert (s.max_input_pixels, s.max_output_pixels) == (40_000_000, 640_000_000)
    assert s.max_output_pixels >= 16 * s.max_input_pixels  # by default the input limit decides
    assert s.allowed_formats == "JPEG,PNG,WEBP,BMP,TIFF" and s.animated_images == "first_frame"
    assert s.decode_timeout_seconds == 60
    assert Settings(allowed_formats="png, gif").allowed_formats == "png, gif"
    for bad in ({"allowed_formats": "JPEG,EPS"}, {"allowed_formats": ""}, {"animated_images": "loop"},
                {"decode_timeout_seconds": 0}, {"max_output_pixels": 0}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_a_body_just_over_the_limit_is_413_json_and_one_at_the_limit_passes(make_app, keys):
    boundary, body = encode_multipart({"image": FileStorage(io.BytesIO(pil(rgb(), "PNG")), filename="p.png")})
    content_type = f"multipart/form-data; boundary={boundary}"
    over = authed(make_app(max_upload_bytes=len(body) - 1), keys(partner="acme")[0])
    response = over.post("/v1/jobs", data=body, content_type=content_type)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_entity_too_large" and f"{len(body) - 1} byte limit" in error["message"]
    # Raw bytes that are not even multipart: refused on the declared length alone.
    response = over.post("/v1/jobs", data=b"\0" * len(body), content_type="multipart/form-data; boundary=x")
    assert response.status_code == 413 and "limit" in error_of(response)["message"]
    at = authed(make_app(max_upload_bytes=len(body)), keys(partner="acme")[0])
    assert at.post("/v1/jobs", data=body, content_type=content_type).status_code == 202


def test_input_pixels_are_checked_from_the_header(make_app, keys):
    client = authed(make_app(max_input_pixels=48 * 32 - 1), keys(partner="acme")[0])
    response = post_image(client, pil(rgb(), "PNG"))
    assert response.status_code == 422
    error = error_of(response)
    assert error["reason"] == "too_many_pixels" and "MAX_INPUT_PIXELS" in error["message"]
    assert "48x32" in error["message"] and error["limit"] == 48 * 32 - 1
    # Only a header and no pixels at all: refused for its size, not for its missing data.
    response = post_image(client, png_raw(48, 32, b""))
    assert error_of(response)["reason"] == "too_many_pixels"
    assert post_image(client, pil(rgb(w=47, h=32), "PNG")).status_code == 202


def test_output_pixels_limit_the_4x_result(make_app, keys):
    limit = (4 * 48) * (4 * 32)
    refused = authed(make_app(max_output_pixels=limit - 1), keys(partner="acme")[0])
    response = post_image(refused, pil(rgb(), "PNG"))
    assert response.status_code == 422
    error = error_of(response)
    assert error["reason"] == "result_too_large" and "MAX_OUTPUT_PIXELS" in error["message"]
    assert "192x128" in error["message"]
    accepted = authed(make_app(max_output_pixels=limit), keys(partner="acme")[0])
    assert post_image(accepted, pil(rgb(), "PNG")).status_code == 202


def test_accepted_formats_come_from_settings(make_app, keys):
    png_only = authed(make_app(allowed_formats="PNG"), keys(partner="acme")[0])
    response = post_image(png_only, pil(rgb(), "JPEG"), "photo.png")
    error = error_of(response)
    assert response.status_code == 422 and error["reason"] == "unsupported_format"
    assert "JPEG" in error["message"] and "(accepted: PNG)" in error["message"]
    assert post_image(png_only, pil(rgb(), "PNG")).status_code == 202

    frames = [rgb(1).convert("P"), rgb(2, w=20, h=10).convert("P")]
    gif = pil(rgb().convert("P"), "GIF", save_all=True, append_images=frames)
    with_gif = authed(make_app(allowed_formats="png,gif"), keys(partner="acme")[0])
    response = post_image(with_gif, gif, "anim.gif")
    assert response.status_code == 202 and response.get_json()["input"] == {"width": 48, "height": 32}


def test_animations_can_be_refused(make_app, keys):
    client = authed(make_app(animated_images="reject"), keys(partner="acme")[0])
    frames = [rgb(1), rgb(2)]
    for name, data in [("apng", pil(rgb(), "PNG", save_all=True, append_images=frames)),
                       ("webp", pil(rgb(), "WEBP", save_all=True, append_images=frames)),
                       ("tiff", pil(rgb(), "TIFF", save_all=True, append_images=frames))]:
        response = post_image(client, data, f"anim.{name}")
        assert response.status_code == 422, name
        error = error_of(response)
        assert error["reason"] == "animated" and "ANIMATED_IMAGES" in error["message"], error
    # Still images, and a camera JPEG with a second (preview) picture, are not animations.
    for data in (pil(rgb(), "PNG"), pil(rgb(), "WEBP"), pil(rgb(), "TIFF"),
                 pil(rgb(), "MPO", save_all=True, append_images=[rgb(1)])):
        assert post_image(client, data).status_code == 202


@pytest.mark.parametrize("side", [10_000, 14_000])  # Pillow only warns between 89.5 and 179 MP
def test_bomb_warnings_refuse_even_when_warnings_are_ignored(side):
    settings = Settings(max_input_pixels=10**9, max_output_pixels=10**12)  # Pillow's limit decides
    upload = FileStorage(io.BytesIO(png_raw(side, side, b"")), filename="bomb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a production process: nobody turned warnings into errors
        with pytest.raises(InvalidImage) as info:
            read_upload(upload, settings)
    assert info.value.details["reason"] == "too_many_pixels"


def test_upload_check_fuzz_never_raises_anything_but_a_4xx():
    """Seeded mutations of valid files straight through read_upload: an Upload or a 4xx, nothing else."""
    rng = np.random.default_rng(7)
    seeds = [c.data for c in build() if c.category == "valid"]
    settings = Settings()
    outcomes = {"accepted": 0, "refused": 0}
    for i in range(400):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(data)))
            op = int(rng.integers(0, 4))
            if op == 0:
                data[at] = int(rng.integers(0, 256))
            elif op == 1:
                data[at:at + 4] = (0xFFFFFFFF).to_bytes(4, "big")  # a length or size field gone huge
            elif op == 2:
                del data[at:at + int(rng.integers(1, 64))]
            else:
                data[at:at] = data[max(0, at - 64):at]  # a duplicated run (chunks, markers)
        try:
            read_upload(FileStorage(io.BytesIO(bytes(data)), filename="f.bin"), settings)
            outcomes["accepted"] += 1
        except (InvalidImage, InvalidUpload):
            outcomes["refused"] += 1
    print(f"\nfuzz: {outcomes}")
    assert sum(outcomes.values()) == 400
