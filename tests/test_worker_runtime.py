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
from worker.runtime import Runtime


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
    """What a load returns here: records the images it is run on."""

    def __init__(self):
        self.runs = []

    def upscale(self, pixels, progress=None):
        self.runs.append(pixels)
        return pixels


class ScriptedLoads:
    """Stands in for `Runtime._load_model`: each call takes the next outcome (an exception to raise, or
    a model to return), after `gate` is set. Counts the calls."""

    def __init__(self, *outcomes):
        self.outcomes, self.calls, self.gate = list(outcomes), 0, threading.Event()

    def __call__(self):
        self.calls += 1
        assert self.gate.wait(30), "the test never let the load finish"
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_a_job_during_the_preload_waits_for_that_load_and_gets_its_model(monkeypatch):
    rt = Runtime(Settings(model_device="cpu", model_tile=64))
    model = FakeModel()
    loads = ScriptedLoads(model)
    monkeypatch.setattr(rt, "_load_model", loads)
    loading = rt.preload()
    got = []
    job = threading.Thread(target=lambda: got.append(rt.upscaler))  # a job reaching the model meanwhile
    job.start()
    job.join(0.2)
    assert job.is_alive() and got == []  # it waits for the load (still held at the gate) ...
    loads.gate.set()
    job.join(30)
    loading.join(30)
    assert got == [model] and rt.upscaler is model  # ... and gets that load's model: one load in all
    assert loads.calls == 1
    (blank,) = model.runs  # run once at start, on a blank tile of the service's size, before the job had it
    assert blank.shape == (64, 64, 3) and blank.dtype == np.uint8 and not blank.any()


def test_a_preload_that_fails_is_logged_and_the_next_job_loads_again(monkeypatch, caplog):
    rt = Runtime(Settings(model_device="cpu"))
    model = FakeModel()
    loads = ScriptedLoads(OSError("weights file is truncated"), model)
    loads.gate.set()
    monkeypatch.setattr(rt, "_load_model", loads)
    with caplog.at_level(logging.ERROR, logger="worker.runtime"):
        rt.preload().join(30)
    (record,) = [r for r in caplog.records if r.name == "worker.runtime"]
    assert "could not load and run the model at start" in record.getMessage()
    assert "weights file is truncated" in record.exc_text
    assert rt.upscaler is model and loads.calls == 2  # the lock was released: the job's own load ran


def test_the_worker_loads_its_model_at_start_only_when_model_preload_is_on(monkeypatch):
    from worker import app, runtime as runtime_module

    started = []
    monkeypatch.setattr("worker.decode_guard.start_decoder", lambda: started.append("decoder"))
    monkeypatch.setattr(runtime_module.Runtime, "preload", lambda self: started.append("model"))
    monkeypatch.setattr(runtime_module, "_runtime", Runtime(Settings(model_device="cpu")))
    for preload, expected in ((True, ["decoder", "model"]), (False, ["decoder"])):
        started.clear()
        monkeypatch.setattr(app, "get_settings", lambda: Settings(model_preload=preload))
        app._start_decoder_and_model()
        assert started == expected
