"""gunicorn's settings for the API: `gunicorn -c gunicorn.conf.py …` (Procfile, docker-compose.yml,
Dockerfile). gunicorn's master runs this file once at start, before any worker exists.

Metrics: each worker process writes its series to files in PROMETHEUS_MULTIPROC_DIR and GET /metrics
sums every process's files (prometheus_client's multiprocess mode, api/metrics.py). The variable must
be set before prometheus_client is first imported, in the master, so that the workers inherit it; and
the folder must be empty at each start, or a previous run's counts would be counted again. So: a
folder named in the environment is emptied of its metric files (one folder per gunicorn), else a
temporary one is made and removed at exit. Nothing here imports prometheus_client or the app at
module level (that would fix the mode before the variable is set).

Logs: with LOG_FORMAT=json, gunicorn's own lines come out as JSON too (shared/logs.py).

Garbage collection: each worker freezes the objects it holds once the app is loaded (`gc.freeze()`):
they stay for the worker's life, and a full collection that walked them all (~140,000 objects, ~40 ms
holding the GIL, ~80 ms under load) stalled every thread of the worker now and then, the largest
part of the polls' latency tail (bench/poll_load.py: max 79 → 11-19 ms, docs/benchmarks.md).

Worker model (the Procfile's `-w 2 --threads 4 -k gthread`, measured against 2x2, 3x2 and sync by
bench/poll_load.py on 2 cores): one process per core, each with threads that overlap its waits on
Postgres, Redis and S3 and keep answering polls while a slow client uploads.
"""
import gc
import glob
import os
import shutil
import tempfile

from shared import logs
from shared.settings import Settings

OWNED = "PORTRAITS_OWNS_PROMETHEUS_MULTIPROC_DIR"  # set when this file made the folder


def fresh_multiproc_dir(environ=os.environ) -> str:
    """PROMETHEUS_MULTIPROC_DIR, emptied of metric files, or a new temporary folder; set in `environ`."""
    path = environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="portraits-metrics-")
        environ["PROMETHEUS_MULTIPROC_DIR"] = environ[OWNED] = path
    return path


fresh_multiproc_dir()
if Settings().log_format == "json":
    logconfig_dict = logs.dict_config("json")


def post_worker_init(worker):
    """In each worker, once the app is loaded: what it holds so far leaves the collector's sight."""
    gc.freeze()


def child_exit(server, worker):
    """A worker died or was replaced: drop its live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get(OWNED) and os.environ.get(OWNED) == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(os.environ[OWNED], ignore_errors=True)
