"""Metrics through the Procfile's processes: the API's GET /metrics (gunicorn's 2 workers summed) moves
with a job, and the worker, sweeper and deliverer each answer on the port honcho gave them ($PORT + 100
per Procfile line, METRICS_PORT=$PORT in the Procfile)."""
from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import WORKER_STAGES
from tests.imagegen import encode, synthetic_portrait

pytestmark = pytest.mark.system


def scrape(url: str) -> dict:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_the_apis_metrics_move_with_a_job(stack, partner):
    before = scrape(stack.metrics_url("api"))
    assert value(before, "portraits_database_up") == 1 and value(before, "portraits_broker_up") == 1
    worker_before = scrape(stack.metrics_url("worker"))
    submitted = partner.client.submit(encode(synthetic_portrait(64)))
    assert submitted.status_code == 202, submitted.text
    job, _ = partner.client.wait(submitted.json()["id"])
    assert job["status"] == "succeeded", job
    after = scrape(stack.metrics_url("api"))
    worker_after = scrape(stack.metrics_url("worker"))

    def moved(a, b, name, **labels):
        return value(b, name, **labels) - value(a, name, **labels)

    # Earlier tests' jobs may still be finishing: this job moves each series by at least one.
    assert moved(before, after, "portraits_job_transitions_total", from_status="new", to_status="queued") >= 1
    assert moved(before, after, "portraits_http_requests_total", method="POST", endpoint="/v1/jobs",
                 status="202") >= 1
    assert moved(before, after, "portraits_http_requests_total", method="GET", endpoint="/v1/jobs/<job_id>",
                 status="200") >= 1
    assert moved(worker_before, worker_after, "portraits_job_transitions_total", from_status="running",
                 to_status="succeeded") >= 1
    assert moved(worker_before, worker_after, "portraits_worker_tasks_total", outcome="succeeded") >= 1
    assert moved(worker_before, worker_after, "portraits_model_seconds_count", model=job["model"]["name"],
                 version=job["model"]["version"], device="cpu") >= 1
    for stage in WORKER_STAGES:  # where the worker's time beside the model went (bench/job_overhead.py)
        assert moved(worker_before, worker_after, "portraits_worker_stage_seconds_count", stage=stage) >= 1, stage


def test_the_sweeper_and_the_deliverer_serve_their_own_metrics(stack):
    sweeper = scrape(stack.metrics_url("sweeper"))
    assert value(sweeper, "portraits_sweeper_passes_total", outcome="ok") > 0  # it sweeps every 0.5 s
    webhooks = scrape(stack.metrics_url("webhooks"))
    assert value(webhooks, "process_start_time_seconds") > 0  # a process of its own, answering
