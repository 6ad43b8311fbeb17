"""GET /metrics: Prometheus text for the API, and the request counts and latencies behind it.

Under gunicorn each worker process writes its series to files in PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py) and a scrape sums them all, whichever worker answers. The state of the queue is read
when scraped instead (`QueueCollector`): jobs queued and running from Postgres, the broker's queue from
Redis, each with a short timeout; a failed read shows as `portraits_database_up 0` or
`portraits_broker_up 0`, never as a failed scrape.

No key: like /healthz, /metrics is for the operator's network (Prometheus in docker-compose.yml), so
the reverse proxy in front of the API must not route it from the internet. Not rate-limited.
"""
from __future__ import annotations

import logging
import os
import time

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from shared.models import Job, JobStatus
from shared.webhooks import PENDING, WebhookDelivery

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)
READ_TIMEOUT_SECONDS = 1.0  # per scrape-time read; Prometheus's own scrape timeout is 10 s
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter("portraits_http_requests", "API requests answered, by method, route and status code.",
                   ["method", "endpoint", "status"])
LATENCY = Histogram("portraits_http_request_seconds", "Time the API took to answer, by method and route.",
                    ["method", "endpoint"])


class QueueCollector:
    """Read at each scrape: how many jobs wait and run, how old the oldest waiting one is, how many
    messages the broker holds, and how many callbacks are pending. Index-only reads, bounded in time."""

    def __init__(self, engine: Engine, redis_url: str, queue: str):
        self.engine, self.queue = engine, queue
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=READ_TIMEOUT_SECONDS,
                                          socket_connect_timeout=READ_TIMEOUT_SECONDS)
        self._failing: set[str] = set()  # what is down now: logged once per outage, not per scrape

    def collect(self):
        yield from self._read("database", "Postgres", self._jobs)
        yield from self._read("broker", "the Redis broker", self._broker)

    def _read(self, name: str, what: str, read):
        up = GaugeMetricFamily(f"portraits_{name}_up", f"1 if this scrape could read {what}, else 0.")
        try:
            families = list(read())
        except Exception as exc:  # any failure: report it, never fail the scrape
            if name not in self._failing:
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                log.warning("metrics: cannot read %s (%s)", what, reason)
            self._failing.add(name)
            up.add_metric([], 0)
            yield up
            return
        self._failing.discard(name)
        up.add_metric([], 1)
        yield up
        yield from families

    def _jobs(self):
        with self.engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {int(READ_TIMEOUT_SECONDS * 1000)}"))
            rows = conn.execute(select(Job.status, func.count(), func.min(Job.created_at), func.now())
                                .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                                .group_by(Job.status)).all()
            pending = conn.scalar(select(func.count()).select_from(WebhookDelivery)
                                  .where(WebhookDelivery.status == PENDING))
        counts = {JobStatus.QUEUED: 0, JobStatus.RUNNING: 0}
        oldest = 0.0
        for status, count, first, now in rows:
            counts[status] = count
            if status is JobStatus.QUEUED:
                oldest = max(0.0, (now - first).total_seconds())
        jobs = GaugeMetricFamily("portraits_jobs", "Jobs queued (waiting, retries in backoff included) and "
                                 "running now.", labels=["status"])
        for status, count in counts.items():
            jobs.add_metric([status.value], count)
        yield jobs
        yield GaugeMetricFamily("portraits_jobs_oldest_queued_seconds", "Age (since submit) of the oldest "
                                "queued job; 0 when none is queued.", value=oldest)
        yield GaugeMetricFamily("portraits_webhook_deliveries_pending", "Callbacks not yet delivered and "
                                "still being retried.", value=pending)

    def _broker(self):
        with self.redis.pipeline(transaction=False) as pipe:
            waiting, unacked = pipe.llen(self.queue).hlen("unacked").execute()
        yield GaugeMetricFamily("portraits_broker_queue_length", "Messages in the broker queue that no "
                                "worker has taken yet.", value=waiting)
        yield GaugeMetricFamily("portraits_broker_unacked_messages", "Messages taken by a worker and not yet "
                                "acknowledged (running, or lost with their worker until redelivered).",
                                value=unacked)


class _ThisProcess:
    """This process's own series (the default registry), when there is no multiprocess folder."""

    def collect(self):
        return REGISTRY.collect()


def build_registry(engine: Engine, redis_url: str, queue: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every gunicorn worker's files, live and dead
    else:
        registry.register(_ThisProcess())
    registry.register(QueueCollector(engine, redis_url, queue))
    return registry


@bp.get("/metrics")
def scrape():
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(current_app.extensions["metrics"]), content_type=content_type)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        method = request.method if request.method in METHODS else "other"
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"  # a route, never a raw path
        REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
    return response


def install(app: Flask) -> None:
    """Call first in create_app: the timer then starts before any other hook (auth, limits) can answer."""
    services = app.extensions["portraits"]
    app.extensions["metrics"] = build_registry(services.engine, services.settings.redis_url,
                                               services.celery.conf.task_default_queue)
    app.before_request(_start_timer)
    app.after_request(_count)
    app.register_blueprint(bp)
