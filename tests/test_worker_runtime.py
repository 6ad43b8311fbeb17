"""worker/runtime.py: what a worker process builds once, and the process-wide state it sets."""
from __future__ import annotations

import logging
import threading

import cv2
import numpy as np
import pytest
import torch

from bench.cold_start import LOAD_LINE
from shared.settings import Settings
from worker.runtime import Runtime, warm_up


@pytest.fixture
def restored_thread_pools():
    """torch's and OpenCV's pools are process-wide: put them back for the tests that follow."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def test_torch_threads_bounds_opencvs_pool_too(restored_thread_pools, caplog):
    """OpenCV runs the 8-bit path's per-tile work on the model's thread with a pool of its own, sized
    by default from every CPU of the host: TORCH_THREADS must bound it as it bounds the model's."""
    cv2.setNumThreads(8)  # what a larger host would give it
    with caplog.at_level(logging.INFO, logger="worker.runtime"):
        upscaler = Runtime(Settings(torch_threads=1, model_device="cpu")).upscaler
    assert upscaler.threads == 1
    assert cv2.getNumThreads() == 1
    # The load line, as bench/cold_start.py reads the load's seconds off it.
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded model")]
    assert "1 threads, OpenCV 1)" in line and float(LOAD_LINE.search(line).group(1)) >= 0


class FakeModel:
    """What a load returns here: records the images it is run on, and in which thread."""

    def __init__(self):
        self.runs = []

    def upscale(self, pixels, progress=None):
        self.runs.append((pixels, threading.current_thread()))
        return pixels


class ScriptedLoads:
    """Stands in for `Runtime._load_model`: each call takes the next outcome (an exception to raise, or
    a model to return). Counts the calls."""

    def __init__(self, *outcomes):
        self.outcomes, self.calls = list(outcomes), 0

    def __call__(self):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_without_overlap_the_model_starts_in_the_thread_that_runs_the_tasks(monkeypatch):
    """WORKER_OVERLAP=false: the tasks run the model in the thread that runs them, the one the worker
    starts in; a thread's first run is its slowest, so that is where the blank run goes."""
    rt = Runtime(Settings(model_device="cpu", model_tile=64, worker_overlap=False))
    model = FakeModel()
    loads = ScriptedLoads(model)
    monkeypatch.setattr(rt, "_load_model", loads)
    rt.start_model()
    ((blank, thread),) = model.runs
    assert blank.shape == (64, 64, 3) and blank.dtype == np.uint8 and not blank.any()
    assert thread is threading.current_thread()
    assert rt.upscaler is model and loads.calls == 1  # loaded once, kept
    assert "overlap" not in rt.__dict__  # no model thread was started for it


def test_a_start_that_fails_is_logged_and_the_next_job_loads_again(monkeypatch, caplog):
    rt = Runtime(Settings(model_device="cpu", worker_overlap=False))
    model = FakeModel()
    monkeypatch.setattr(rt, "_load_model", ScriptedLoads(OSError("weights file is truncated"), model))
    with caplog.at_level(logging.ERROR, logger="worker.runtime"):
        warm_up(rt)  # does not raise: the worker goes on serving
    (record,) = [r for r in caplog.records if r.name == "worker.runtime"]
    assert "could not load and run the model at start" in record.getMessage()
    assert "weights file is truncated" in record.exc_text
    assert rt.upscaler is model and model.runs == []  # the job's own load ran, and found the model


def test_the_worker_starts_its_model_only_when_model_preload_is_on(monkeypatch):
    from worker import app, runtime as runtime_module

    started = []
    monkeypatch.setattr("worker.decode_guard.start_decoder", lambda: started.append("decoder"))
    monkeypatch.setattr(runtime_module.Runtime, "start_model", lambda self: started.append("model"))
    monkeypatch.setattr(runtime_module, "_runtime", Runtime(Settings(model_device="cpu")))
    for preload, expected in ((True, ["decoder", "model"]), (False, ["decoder"])):
        started.clear()
        monkeypatch.setattr(app, "get_settings", lambda: Settings(model_preload=preload))
        app._start_decoder_and_model()
        assert started == expected


def test_a_worker_without_overlap_runs_its_model_once_before_it_says_ready(settings, client, tmp_path):
    """The real worker process with WORKER_OVERLAP=false: the model's first run happens in the thread
    that runs the tasks, before Celery logs "ready." (it runs in the worker_ready handler); then a job
    goes through as usual, and its model run is the only one counted."""
    from tests.imagegen import encode, post_image, synthetic_portrait
    from tests.polling import poll
    from tests.processes import WorkerProcess

    worker = WorkerProcess(settings, tmp_path / "worker.log", env={"WORKER_OVERLAP": "false"}).start()
    try:
        job_id = post_image(client, encode(synthetic_portrait(48))).get_json()["id"]
        job, _ = poll(lambda: client.get(f"/v1/jobs/{job_id}").get_json(),
                      lambda j: j["status"] not in ("queued", "running"), timeout=120)
    finally:
        worker.stop()
    assert job["status"] == "succeeded", job
    log = worker.log()
    assert log.count("ran the model once on a blank") == 1 and log.count("loaded model") == 1, log
    assert log.index("ran the model once on a blank") < log.index(" ready."), log
