"""What a worker process builds once and reuses across tasks: DB sessions, storage, the model, and the
threads that overlap one job's model with the next one's reading and the last one's storing.

The model is loaded and run once as the worker starts (`start_model`, MODEL_PRELOAD), by the thread
that will run the jobs' model, so the first family after a start or a deploy does not wait for the
~1 s a load takes nor for that thread's slower first run; a job that arrives meanwhile waits its turn
behind it, and a load that failed is tried again by the next job that needs the model.
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

    def __post_init__(self):
        engine = make_engine(self.settings.database_url, "portraits-worker")
        self.sessions = make_session_factory(engine)
        self.statements = make_statement_factory(engine)
        self.storage = Storage(self.settings)

    @property
    def upscaler(self):
        """The model, loaded once, on first use, in the process that runs tasks (never in a forking
        parent). The lock: the model thread and a store thread may both ask first."""
        with self._model_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

    def start_model(self) -> None:
        """At worker start (MODEL_PRELOAD): load the model and run it once, in the thread that will run
        the jobs' model: the overlap's model thread, started now (it does so before taking any job),
        or with WORKER_OVERLAP=false this one, the thread that runs the tasks."""
        if self.settings.worker_overlap:
            self.overlap.start_model()
        else:
            warm_up(self)

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


def warm_up(rt) -> None:
    """Load the model if need be and run it once on a blank tile, in the calling thread. A thread's first
    run of the model is slower than its next ones (each thread has its own OpenVINO inference request,
    and its first run prepares it), so this runs in the thread that will run the jobs. A failure is
    logged, not raised: the worker still serves, and the jobs that need the model try again."""
    try:
        started, edge = time.perf_counter(), rt.settings.model_tile
        rt.upscaler.upscale(np.zeros((edge, edge, 3), np.uint8))
        log.info("ran the model once on a blank %d² tile in %.2f s (load included)", edge,
                 time.perf_counter() - started)
    except Exception:
        log.exception("could not load and run the model at start; the jobs that need it will try again")


def drain(timeout: float) -> bool:
    """Finish the attempts the overlap threads hold (a warm shutdown); True when none is left."""
    if _runtime is None or "overlap" not in _runtime.__dict__:
        return True
    return _runtime.overlap.drain(timeout)
