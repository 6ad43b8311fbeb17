"""Celery tasks: thin wrappers, like views; the work lives in worker/pipeline.py."""
from __future__ import annotations

from shared.queue import UPSCALE_TASK
from worker.app import app
from worker.runtime import runtime


@app.task(name=UPSCALE_TASK)
def upscale_portrait(job_id: str) -> None:
    # Claims and prepares the job, then returns while the model and the store run it (worker/overlap.py).
    runtime().overlap.submit(job_id)
