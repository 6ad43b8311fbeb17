"""The worker's Celery app: `celery -A worker.app worker --pool solo`.

One solo worker process per GPU (or per CPU box): the model is loaded once, in the process that runs
tasks, and CUDA is never initialised in a parent that forks.
"""
from __future__ import annotations

from shared.queue import make_celery
from shared.settings import get_settings

app = make_celery(get_settings(), main="worker")

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
