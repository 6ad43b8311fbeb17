"""POST /v1/faces: the faces in a photo, each with a suggested portrait crop to send as a job's `crop`.

Nothing is stored: the upload is looked at and dropped; no row, no object, no log of its bytes.

The file is checked as POST /v1/jobs checks it (api/uploads.py `read_photo`: format, size and pixel
limits, header checks, then the same decoder), but the decode runs in a throwaway child process
(worker/decode_guard.py), so a decoder that crashes or hangs on a crafted file fails this request with
a 422, never the gunicorn worker.
Detection then runs here, in the API process, on the decoded pixels (model/faces.py: MTCNN on
OpenCV's dnn module): the nets only ever see a well-formed uint8 array, their first pyramid level
capped at FIRST_LEVEL_PIXELS. It is fast enough to answer in the request: see bench/faces_api.py
(README "Portraits from group photos"). One process runs one detection at a time (an OpenCV net must
not run on two threads at once); other routes are not held up.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from api.uploads import read_photo
from model.faces import DEFAULT_ASPECT, PRINT_ASPECTS, find_portraits
from shared.errors import InvalidRequest

bp = Blueprint("faces", __name__, url_prefix="/v1/faces")


@bp.post("")
def find():
    return jsonify(faces_in(request.files.get("image"), request.form.get("aspect")))


def faces_in(file, aspect: str | None) -> dict:
    """The answer of POST /v1/faces for an uploaded file and the form's `aspect`. The console's face
    picker (api/pages/console.py) calls this too."""
    aspect = (aspect or DEFAULT_ASPECT).strip()
    if aspect not in PRINT_ASPECTS:
        raise InvalidRequest(f"aspect must be one of {', '.join(PRINT_ASPECTS)} (width:height of the print), "
                             f"not {aspect[:40]!r}", field="aspect")
    upload, pixels = read_photo(file, current_app.extensions["portraits"].settings)
    found = find_portraits(pixels, aspect)
    del pixels  # a large photo's pixels need not outlive the detection
    return {"image": {"width": upload.width, "height": upload.height}, "aspect": aspect,
            "faces": [{"x": face.x, "y": face.y, "width": face.width, "height": face.height,
                       "confidence": face.confidence, "crop": dict(zip(("x", "y", "width", "height"), crop))}
                      for face, crop in found]}
