"""Overlapped attempts: while the model upscales one job, the next one is read and decoded, and the
previous ones' results are encoded, stored and recorded. One worker process, four threads:

    Celery's thread (the task)   read the original, decode; wait for the model; claim  ─┐
    model thread                 upscale                                                ◀┘ ─┐
    two store threads            encode the PNG, put it, record the success                 ◀┘

A job is claimed only when the model is free for it (`pipeline.start`'s `before_claim`): reading and
decoding an original needs no lease and changes nothing, so a job waiting behind another stays
`queued` (a cancel takes it at once; no attempt is spent on it if the worker dies). The task returns,
and Celery acknowledges its message, once its job is claimed and handed to the model; Celery then
delivers the next message, whose original is read while the model runs. Every claimed job holds its
lease (its heartbeat runs from the claim) until its last transition, so a killed worker loses
nothing: the sweeper requeues its claimed jobs when their leases expire (LEASE_SECONDS), and the one
message it held unacknowledged and unclaimed comes back from Redis (or the sweeper's republish), as
any unfinished task's does. On a warm shutdown the worker first finishes what it holds (`drain`).
At start (MODEL_PRELOAD) the model thread loads the model and runs it once before its first job
(`start_model`): a thread's first run is its slowest.

Every stage still runs through `pipeline.Attempt.step`, with the same fencing, failure handling and
erasure checks as `pipeline.process_job`, which is this minus the threads.
"""
from __future__ import annotations

import logging
import queue
import threading

from shared import logs, metrics
from worker import pipeline, runtime

log = logging.getLogger(__name__)
STORE_THREADS = 2  # a put mostly waits for S3: two keep the model fed with small jobs


class Overlap:
    def __init__(self, rt):
        self.rt = rt
        self._model_free = threading.Semaphore(1)  # held from a claim until the model is done with it
        self._to_model: queue.Queue = queue.Queue()
        self._to_store: queue.Queue = queue.Queue(maxsize=STORE_THREADS)  # results in memory: bounded
        self._busy = 0  # attempts claimed and not yet finished, and a start_model not yet done
        self._idle = threading.Condition()
        loops = [("model", self._model_loop)] + [(f"store-{i}", self._store_loop) for i in range(STORE_THREADS)]
        for name, loop in loops:
            threading.Thread(target=loop, name=f"overlap-{name}", daemon=True).start()

    def submit(self, job_id: str) -> str:
        """Read and decode the job's original, wait until the model is free, claim the job and hand it
        over ("overlapped"); or how the attempt ended if it ended here."""
        waited = False

        def model_free() -> None:
            nonlocal waited
            self._model_free.acquire()
            waited = True

        handed = False
        try:
            with logs.job_context(job_id):
                attempt = pipeline.start(job_id, self.rt, before_claim=model_free)
                if isinstance(attempt, str):
                    metrics.TASKS.labels(attempt).inc()
                    return attempt
                self._started()
                self._to_model.put(attempt)
                handed = True
                return "overlapped"
        finally:
            if waited and not handed:
                self._model_free.release()

    def start_model(self) -> None:
        """Load the model and run it once in the model thread, ahead of any job (MODEL_PRELOAD,
        `runtime.warm_up`). It holds the model as a job would: a job read meanwhile is claimed after."""
        self._model_free.acquire()
        self._started()
        self._to_model.put(None)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every attempt taken is finished; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _model_loop(self) -> None:
        while True:
            attempt = self._to_model.get()
            if attempt is None:  # start_model's turn
                runtime.warm_up(self.rt)
                self._model_free.release()
                self._done()
                continue
            outcome = self._run(attempt, pipeline.upscale)
            if outcome is None:
                self._to_store.put(attempt)  # waits while both store threads are busy: memory stays bounded
            self._model_free.release()  # the next job may be claimed now
            if outcome is not None:
                self._ended(outcome)

    def _store_loop(self) -> None:
        while True:
            attempt = self._to_store.get()
            outcome = self._run(attempt, pipeline.store)
            if outcome is None:
                outcome = self._run(attempt, None)
            self._ended(outcome)

    def _run(self, attempt: pipeline.Attempt, stage) -> str | None:
        """A stage (None: the success transition), never raising: this thread must live on."""
        try:
            return attempt.finish() if stage is None else attempt.step(stage)
        except BaseException:  # a bug in the stage's own error handling: the lease will expire
            log.exception("job %s: the %s stage failed unexpectedly; its lease will expire", attempt.job.id,
                          getattr(stage, "__name__", "finish"))
            attempt.beat.stop()
            return "error"

    def _started(self) -> None:
        with self._idle:
            self._busy += 1

    def _ended(self, outcome: str) -> None:
        metrics.TASKS.labels(outcome).inc()
        self._done()

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
