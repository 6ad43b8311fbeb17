"""What a worker process builds once and reuses across tasks: DB sessions, storage, the model, and the
threads that overlap one job's model with the next one's reading and the last one's storing.

The model is loaded when the worker starts (`preload`, in the background: MODEL_PRELOAD), so the first
family after a start or a deploy does not wait the ~2 s a load takes; a job that arrives meanwhile
waits for that same load, and a load that failed is tried again by the next job that needs the model.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
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
    _model_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _model: object = field(init=False, repr=False, default=None)
    _preloading: threading.Thread | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        engine = make_engine(self.settings.database_url, "portraits-worker")
        self.sessions = make_session_factory(engine)
        self.statements = make_statement_factory(engine)
        self.storage = Storage(self.settings)

    @property
    def upscaler(self):
        """The model, loaded once in the process that runs tasks (never in a forking parent): by
        `preload`, or else by the first job that needs it. While a load runs, others wait for it."""
        with self._model_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

    def preload(self) -> threading.Thread:
        """Load the model in a background thread and run it once on a blank tile: a network's first run
        allocates and prepares what later runs reuse (about as long again as a warm 512² upscale, on
        the first job otherwise). The lock is taken before the thread starts, so a job that asks for
        the model after this returns waits for this load rather than starting its own."""
        self._model_lock.acquire()

        def load() -> None:
            try:
                if self._model is None:
                    self._model = self._load_model()
                    started, edge = time.perf_counter(), self.settings.model_tile
                    self._model.upscale(np.zeros((edge, edge, 3), np.uint8))
                    log.info("ran the model once on a blank %d² tile in %.2f s", edge, time.perf_counter() - started)
            except Exception:  # the worker still serves: the first job tries again, and fails if it must
                log.exception("could not load and run the model at start; the jobs that need it will try again")
            finally:
                self._model_lock.release()

        self._preloading = threading.Thread(target=load, name="model-preload", daemon=True)
        self._preloading.start()
        return self._preloading

    def wait_for_preload(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, for a `preload` still running."""
        if self._preloading is not None:
            self._preloading.join(timeout)

    def _load_model(self):
        started = time.perf_counter()  # the imports count: torch and OpenVINO take most of a load
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
        log.info("loaded model %s %s on %s (%s %s, %d threads, OpenCV %d) in %.1f s", upscaler.name,
                 upscaler.version, upscaler.device, upscaler.backend, upscaler.precision, upscaler.threads,
                 cv2.getNumThreads(), time.perf_counter() - started)
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
    """Finish the attempts the overlap threads hold (a warm shutdown), and a model load still running
    (the process does not exit in the middle of it); True when none is left."""
    if _runtime is None:
        return True
    deadline = time.monotonic() + timeout
    _runtime.wait_for_preload(timeout)
    if "overlap" not in _runtime.__dict__:
        return True
    return _runtime.overlap.drain(max(0.0, deadline - time.monotonic()))
