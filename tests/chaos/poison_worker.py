"""A Celery worker that hard-crashes (os._exit, like a segfault or an out-of-memory kill in the model)
when asked to upscale a 13-px-wide image. Decoding runs in an isolated child process (a crash there
fails only the job), so the poison sits in the model step, which runs in the worker itself.
Used only by tests/chaos."""
from __future__ import annotations

import os

from model.upscaler import Upscaler

_upscale = Upscaler.upscale


def crashing_upscale(self, img, progress=None):
    if img.shape[1] == 13:
        os._exit(139)
    return _upscale(self, img, progress=progress)


Upscaler.upscale = crashing_upscale

if __name__ == "__main__":
    from worker.app import app

    app.worker_main(["worker", "--pool", "solo", "--loglevel", "INFO", "--hostname", "poison@%h",
                     "--without-mingle", "--without-gossip"])
