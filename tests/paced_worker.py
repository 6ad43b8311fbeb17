"""Celery app for tests whose timing matters: the real worker (`worker.app`), except that the model
pauses TEST_TILE_DELAY_SECONDS after each batch of tiles, before reporting it. A job then lasts about
tiles x delay, a duration the test sets, whatever the speed of this CPU: progress and cancel tests pass
on one slow core and on a fast one alike. Run as `celery -A tests.paced_worker worker`."""
from __future__ import annotations

import os
import time

from model.upscaler import Upscaler
from worker.app import app

DELAY_SECONDS = float(os.environ.get("TEST_TILE_DELAY_SECONDS", "0.25"))
_upscale = Upscaler.upscale


def paced_upscale(self, img, progress=None):
    def paced(done: int, total: int) -> None:
        if done:
            time.sleep(DELAY_SECONDS)
        if progress:
            progress(done, total)

    return _upscale(self, img, progress=paced)


Upscaler.upscale = paced_upscale

__all__ = ["app"]
