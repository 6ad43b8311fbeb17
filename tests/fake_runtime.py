"""What worker.pipeline and worker.overlap read of a worker's runtime (worker/runtime.py), for tests that
drive them in-process with the real database and storage but a fake upscaler."""
from __future__ import annotations

from dataclasses import dataclass, field

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
