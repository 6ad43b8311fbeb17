"""Small image makers for tests (no shared data needed)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def synthetic_portrait(size: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth face-like RGB image: shaded ellipse, eyes, mouth, gentle gradient background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.3 * x, 0.4 + 0.2 * y, 0.6 - 0.2 * x], axis=-1)
    face = ((x - 0.5) / 0.32) ** 2 + ((y - 0.52) / 0.42) ** 2 < 1
    img[face] = [0.85, 0.68, 0.55]
    for cx in (0.38, 0.62):
        eye = ((x - cx) / 0.06) ** 2 + ((y - 0.45) / 0.03) ** 2 < 1
        img[eye] = [0.1, 0.08, 0.08]
    mouth = ((x - 0.5) / 0.12) ** 2 + ((y - 0.7) / 0.025) ** 2 < 1
    img[mouth] = [0.6, 0.2, 0.2]
    img += rng.normal(0, 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **params)
    return buf.getvalue()


def post_image(client, data: bytes, name: str = "portrait.png", headers: dict | None = None,
               form: dict | None = None, path: str = "/v1/jobs"):
    """POST /v1/jobs (or `path`, e.g. /v1/faces) with `data` as the multipart field `image`.

    The body is encoded in memory: werkzeug's test client would spool a large upload to a temporary
    file that it never closes (a ResourceWarning, which this suite treats as an error)."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    boundary, body = encode_multipart({**(form or {}), "image": FileStorage(io.BytesIO(data), filename=name)})
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       headers=headers or {})
