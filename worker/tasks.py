"""Celery tasks: thin wrappers, like views; the work lives in worker/pipeline.py."""
from __future__ import annotations

from shared.queue import UPSCALE_TASK
from worker.app import app
from worker.pipeline import process_job
from worker.runtime import runtime


@app.task(name=UPSCALE_TASK)
def upscale_portrait(job_id: str) -> None:
    rt = runtime()
    if rt.settings.worker_overlap:  # reads the job, claims it, returns while the model runs it
        rt.overlap.submit(job_id)
    else:
        process_job(job_id, rt)
