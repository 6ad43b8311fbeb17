"""What worker.pipeline and worker.overlap read of a worker's runtime (worker/runtime.py), for tests that
drive them in-process with the real database and storage but a fake upscaler."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Runtime:
    settings: object
    sessions: object
    storage: object
    upscaler: object  # anything with name, version and upscale(pixels, progress=None)
