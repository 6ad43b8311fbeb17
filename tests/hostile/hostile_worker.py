"""Celery app for tests/hostile: the real worker (`worker.app`), except that the decoder the pipeline hands
to worker.decode_guard aborts or hangs on two marker sizes (tests.hostile.decoders). Run it as
`celery -A tests.hostile.hostile_worker worker`: the decoder misbehaves in the guard's child process, as an
exploited libpng or libjpeg would, and the worker must fail those jobs and carry on."""
from __future__ import annotations

import worker.pipeline as pipeline
from tests.hostile import decoders
from worker.app import app

pipeline.decode_image = decoders.misbehaves_on_marker_sizes

__all__ = ["app"]
