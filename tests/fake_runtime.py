"""What worker.pipeline and worker.overlap read of a worker's runtime (worker/runtime.py), for tests that
drive them in-process with the real database and storage but a fake upscaler (`RepeatUpscaler`, or
their own)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.db import make_statement_factory


@dataclass
class Runtime:
    settings: object
    sessions: object  # a sessionmaker, as make_session_factory returns
    storage: object
    upscaler: object  # anything with name, version and upscale(pixels, progress=None)
    statements: object = field(init=False)  # autocommit sessions on the same engine, as the worker's

    def __post_init__(self):
        self.statements = make_statement_factory(self.sessions.kw["bind"])


class RepeatUpscaler:
    """Stands in for the model: 4x by repeating pixels, reporting two tiles, calling `on_tile` after each."""

    name, version = "repeat_x4", "test"

    def __init__(self, on_tile=None):
        self.on_tile = on_tile

    def upscale(self, pixels: np.ndarray, progress=None) -> np.ndarray:
        for done in (0, 1, 2):
            if progress:
                progress(done, 2)
            if done and self.on_tile:
                self.on_tile(done)
        return pixels.repeat(4, axis=0).repeat(4, axis=1)
