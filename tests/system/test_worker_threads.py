"""The Procfile's worker with TORCH_THREADS=2 and the service's 512 px tile: a photo large enough for the
8-bit path's tail to be shared out among the model's threads (model/rgb8.py, `SPLIT_MIN_PIXELS`) comes
back over HTTP with exactly the pixels the model gives in this process with the tail on one thread.
The package's stack runs one thread and 32 px tiles, where that split never happens, so this module
starts a stack of its own (its own database, Redis index and bucket) from the real Procfile; its
worker, fresh, also shows that the model is loaded as the worker starts (MODEL_PRELOAD)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import requests

from model import rgb8
from model.images import decode_image
from model.upscaler import Upscaler
from tests.imagegen import encode, synthetic_portrait
from tests.polling import poll
from tests.processes import ROOT
from tests.system.conftest import Partner, own_stack_env
from tests.system.stack import Stack
from tests.system.test_metrics import scrape

pytestmark = pytest.mark.system

SIDE = 256  # 1024² out: one tile of at least SPLIT_MIN_PIXELS output pixels


@pytest.fixture(scope="module")
def threaded_stack(settings, tmp_path_factory):
    overrides = dict(torch_threads=2, model_tile=512)
    with own_stack_env(settings, tmp_path_factory, "threads", **overrides) as (folder, env, port):
        running = Stack(folder, env, port, procfile=(ROOT / "Procfile").read_text()).start()
        try:
            yield running
        finally:
            running.stop()


def test_the_worker_loads_its_model_as_it_starts_before_any_job(threaded_stack):
    """MODEL_PRELOAD (on by default): the first family after a start does not wait for the load. Runs
    first in this module, on a stack no job has reached yet."""
    log, _ = poll(lambda: threaded_stack.process_log("worker"), lambda text: "ran the model once" in text,
                  timeout=120)
    samples = scrape(threaded_stack.metrics_url("worker"))
    tasks = {labels: n for (name, labels), n in samples.items() if name == "portraits_worker_tasks_total"}
    assert sum(tasks.values()) == 0, tasks  # loaded with no task run
    assert re.search(r"loaded model espcn_\w+ \S+ on cpu \(.*\) in \d+\.\d s", log), log
    assert "ran the model once on a blank 512² tile" in log, log


def test_a_photo_split_among_two_threads_comes_back_with_the_models_pixels(threaded_stack, monkeypatch):
    # Else the worker would not split the tail, and this would prove nothing.
    assert (4 * SIDE) ** 2 >= rgb8.SPLIT_MIN_PIXELS
    partner = Partner(threaded_stack, "Threaded Memorials")
    upload = encode(synthetic_portrait(SIDE, seed=11))
    job_id = partner.client.submit(upload).json()["id"]
    job, _ = partner.client.wait(job_id)
    assert job["status"] == "succeeded", job
    location = partner.client.get(f"/v1/jobs/{job_id}/result", allow_redirects=False).headers["Location"]
    result = decode_image(requests.get(location, timeout=30).content)
    monkeypatch.setattr(rgb8, "workers", lambda count, pixels: rgb8.SERIAL)  # the reference: one thread
    expected = Upscaler.from_weights(device="cpu", tile=512).upscale(decode_image(upload))
    assert result.shape == expected.shape and np.array_equal(result, expected)
    assert "2 threads, OpenCV 2)" in threaded_stack.process_log("worker")
