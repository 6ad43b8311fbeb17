"""Runs after the other system tests (pytest orders files by name): what the processes logged while
serving them. One line per job transition; expected failures (a missing original, a cancel) without
tracebacks; no Celery "Task … succeeded" after a failed attempt."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.system


def test_logs_show_each_transition_and_no_traceback(stack):
    worker, api, everything = stack.process_log("worker"), stack.process_log("api"), stack.log()
    assert "new → queued" in api and "partner_id=" in api
    assert "queued → running" in worker and "running → succeeded" in worker and "run_ms=" in worker
    assert "running → cancelled" in worker
    assert "running → failed" in worker and "error_code=original_missing" in worker
    assert "Traceback" not in everything, everything[everything.index("Traceback") - 2000:][:6000]
    assert "succeeded in" not in worker  # Celery's own per-task line is silenced
    # TORCH_THREADS=1 (conftest) bounds the model's threads and OpenCV's pool alike (worker/runtime.py).
    assert "1 threads, OpenCV 1)" in worker, worker[:3000]
