"""The worker's Celery app: `celery -A worker.app worker --pool solo`.

One solo worker process per GPU (or per CPU box): the model is loaded once, in the process that runs
tasks, and CUDA is never initialised in a parent that forks.
"""
from __future__ import annotations

import logging

from shared.queue import make_celery
from shared.settings import get_settings

app = make_celery(get_settings(), main="worker")
# Celery's own "Task … succeeded in 0.4s: None" follows every task, even an attempt that failed and was
# requeued (the task handled it): misleading. The job's transition line (shared/lifecycle.py) says
# what happened; Celery's warnings and errors still come through.
logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
