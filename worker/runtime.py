"""What a worker process builds once and reuses across tasks: DB sessions, storage, the model, and the
threads that overlap one job's model with the next one's reading and the last one's storing."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory, make_statement_factory
from shared.settings import Settings, get_settings
from shared.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session] = field(init=False)
    statements: sessionmaker[Session] = field(init=False)  # one-statement work, autocommit (shared/db.py)
    storage: Storage = field(init=False)

    def __post_init__(self):
        engine = make_engine(self.settings.database_url, "portraits-worker")
        self.sessions = make_session_factory(engine)
        self.statements = make_statement_factory(engine)
        self.storage = Storage(self.settings)

    @cached_property
    def upscaler(self):
        """The model, loaded on first use in the process that runs tasks (never in a forking parent)."""
        import cv2
        import torch

        from model import Upscaler

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        upscaler = Upscaler.from_weights(self.settings.model_weights, device=self.settings.model_device,
                                         tile=self.settings.model_tile)
        # OpenCV (the 8-bit path's per-tile resize and arithmetic, on the model's thread) sizes its pool
        # from every CPU of the host, whatever TORCH_THREADS says: N workers on one host would each
        # start a thread per CPU. It gets the model's threads, as OpenVINO and torch do.
        cv2.setNumThreads(upscaler.threads)
        log.info("loaded model %s %s on %s (%s %s, %d threads, OpenCV %d)", upscaler.name, upscaler.version,
                 upscaler.device, upscaler.backend, upscaler.precision, upscaler.threads, cv2.getNumThreads())
        return upscaler

    @cached_property
    def overlap(self):
        """The model and store threads (worker/overlap.py), started on first use by a task."""
        from worker.overlap import Overlap

        return Overlap(self)


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def drain(timeout: float) -> bool:
    """Finish the attempts the overlap threads hold (a warm shutdown); True when none is left."""
    if _runtime is None or "overlap" not in _runtime.__dict__:
        return True
    return _runtime.overlap.drain(timeout)
