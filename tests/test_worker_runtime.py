"""worker/runtime.py: what a worker process builds once, and the process-wide state it sets."""
from __future__ import annotations

import cv2
import pytest
import torch

from shared.settings import Settings
from worker.runtime import Runtime


@pytest.fixture
def restored_thread_pools():
    """torch's and OpenCV's pools are process-wide: put them back for the tests that follow."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def test_torch_threads_bounds_opencvs_pool_too(restored_thread_pools):
    """OpenCV runs the 8-bit path's per-tile work on the model's thread with a pool of its own, sized
    by default from every CPU of the host: TORCH_THREADS must bound it as it bounds the model's."""
    cv2.setNumThreads(8)  # what a larger host would give it
    upscaler = Runtime(Settings(torch_threads=1, model_device="cpu")).upscaler
    assert upscaler.threads == 1
    assert cv2.getNumThreads() == 1
