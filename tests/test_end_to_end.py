"""One portrait through the whole real stack: Flask API → Postgres + S3 → Redis → Celery worker
process → model → S3 → presigned download."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import pyramid_reduce

from tests.conftest import require_faces
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.processes import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker(settings, storage, tmp_path_factory):
    process = WorkerProcess(settings, tmp_path_factory.mktemp("worker") / "worker.log").start()
    yield process
    process.stop()


def downscale(hr: np.ndarray) -> np.ndarray:
    """The seed protocol: skimage pyramid_reduce by 4."""
    lr = pyramid_reduce(hr.astype(np.float64) / 255, downscale=4, channel_axis=-1)
    return (np.clip(lr, 0, 1) * 255).round().astype(np.uint8)


def run_job(client, data: bytes, timeout: float = 120) -> tuple[dict, np.ndarray]:
    submitted = post_image(client, data)
    assert submitted.status_code == 202, submitted.get_json()
    url = submitted.headers["Location"]
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(url).get_json()
        if job["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s"
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    result = client.get(f"{url}/result")
    assert result.status_code == 302
    download = requests.get(result.headers["Location"], timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "image/png"
    return job, np.asarray(Image.open(io.BytesIO(download.content)).convert("RGB"))


def psnr_vs_bicubic(hr: np.ndarray, lr: np.ndarray, sr: np.ndarray) -> tuple[float, float]:
    size = (hr.shape[1], hr.shape[0])
    bicubic = np.asarray(Image.fromarray(lr).resize(size, Image.Resampling.BICUBIC))
    return (peak_signal_noise_ratio(hr, sr, data_range=255),
            peak_signal_noise_ratio(hr, bicubic, data_range=255))


def test_128px_portrait_becomes_512px_png_sharper_than_bicubic(client, worker):
    hr = synthetic_portrait(512)
    lr = downscale(hr)
    assert lr.shape == (128, 128, 3)
    job, sr = run_job(client, encode(lr))
    assert job["output"] == {"width": 512, "height": 512} and sr.shape == (512, 512, 3)
    assert job["started_at"] and job["finished_at"] and job["attempts"] == 1
    ours, bicubic = psnr_vs_bicubic(hr, lr, sr)
    assert ours > bicubic, (ours, bicubic)


def test_unseen_face_is_closer_to_the_original_than_bicubic(client, worker):
    face = Image.open(require_faces()[7]).convert("RGB")
    side = min(face.size)
    left, top = (face.width - side) // 2, (face.height - side) // 2
    hr = np.asarray(face.crop((left, top, left + side, top + side)).resize((176, 176), Image.Resampling.LANCZOS))
    lr = downscale(hr)
    job, sr = run_job(client, encode(lr))
    assert sr.shape == hr.shape
    ours, bicubic = psnr_vs_bicubic(hr, lr, sr)
    assert ours > bicubic + 0.5, (ours, bicubic)


def test_undecodable_stored_original_fails_the_job_readably(client, app, worker):
    """A corrupt object (e.g. damaged in storage) fails its job with a message, not a crash."""
    import uuid

    from shared.models import Job, JobStatus
    from shared.queue import publish_upscale

    from sqlalchemy import select

    from shared.accounts import Partner
    from shared.storage import original_key

    services = app.extensions["portraits"]
    with services.sessions() as s:
        partner_id = s.scalar(select(Partner.id).where(Partner.name == "acme"))  # the client's partner
    job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, partner_id=partner_id, input_key="",
              input_content_type="image/png", input_width=8, input_height=8)
    job.input_key = original_key(partner_id, job.id)
    services.storage.put(job.input_key, b"not an image at all", "image/png")
    with services.sessions() as s, s.begin():
        s.add(job)
    publish_upscale(services.celery, job.id)
    deadline = time.monotonic() + 60
    while (body := client.get(f"/v1/jobs/{job.id}").get_json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["status"] == "failed"
    assert body["error_code"] == "image_undecodable" and "could not be decoded" in body["error"]
    assert " ready." in worker.log() and worker.proc.poll() is None  # the worker survived
