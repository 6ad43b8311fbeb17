"""Metrics and logs: GET /metrics through the app as jobs change state, the sums of a real gunicorn's
workers, the worker's own endpoint, and JSON log lines that carry the job id."""
from __future__ import annotations

import concurrent.futures
import glob
import io
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from shared import lifecycle, logs, metrics
from shared.failures import failure
from shared.queue import make_celery
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait
from tests.polling import poll
from tests.processes import ROOT, WorkerProcess, service_env
from tests.receiver import Receiver
from worker.sweeper import sweep_once
from worker.webhooks import deliver_due


# ---------------------------------------------------------------------------------------------- helpers
class Samples(dict):
    """Parsed Prometheus text: {(sample name, labels): value}; a series never written reads as 0."""

    def __init__(self, body: str):
        super().__init__()
        self.families = set()
        for family in text_string_to_metric_families(body):
            self.families.add(family.name)
            for s in family.samples:
                self[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels) -> float:
        return self.get((name, frozenset(labels.items())), 0.0)


def scrape(app) -> Samples:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return Samples(response.get_data(as_text=True))


def scrape_url(url: str) -> Samples:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return Samples(response.text)


def moved(before: Samples, after: Samples, name: str, **labels) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def claim(app, job_id: str):
    with app.extensions["portraits"].sessions() as s, s.begin():
        return lifecycle.claim(s, uuid.UUID(job_id), "test:1", 30)


def fail(app, job, code: str) -> None:
    with app.extensions["portraits"].sessions() as s, s.begin():
        lifecycle.fail_or_retry(s, job, failure(code), detail="injected", backoff=60)


def free_port() -> int:
    from devstack.ports import free_port as pick

    return pick()


# ------------------------------------------------------------------------------------ through the app
def test_metrics_is_public_prometheus_text_and_not_rate_limited(app):
    response = app.test_client().get("/metrics")  # no key
    assert response.status_code == 200
    assert response.mimetype == "text/plain" and "version=" in response.content_type
    assert "X-RateLimit-Limit" not in response.headers
    openmetrics = app.test_client().get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.mimetype == "application/openmetrics-text"
    assert openmetrics.get_data(as_text=True).rstrip().endswith("# EOF")


def test_a_job_changing_state_moves_its_series(app, client):
    start = scrape(app)
    assert start.value("portraits_database_up") == 1 and start.value("portraits_broker_up") == 1
    assert start.value("portraits_jobs", status="queued") == 0

    job_id = post_image(client, encode(synthetic_portrait(32))).get_json()["id"]
    queued = scrape(app)
    assert queued.value("portraits_jobs", status="queued") == 1
    assert queued.value("portraits_jobs", status="running") == 0
    assert queued.value("portraits_broker_queue_length") == 1  # its message, waiting for a worker
    assert moved(start, queued, "portraits_job_transitions_total", from_status="new", to_status="queued") == 1
    assert moved(start, queued, "portraits_http_requests_total", method="POST", endpoint="/v1/jobs",
                 status="202") == 1
    assert moved(start, queued, "portraits_http_request_seconds_count", method="POST",
                 endpoint="/v1/jobs") == 1

    job = claim(app, job_id)
    running = scrape(app)
    assert running.value("portraits_jobs", status="queued") == 0
    assert running.value("portraits_jobs", status="running") == 1
    assert moved(queued, running, "portraits_job_wait_seconds_count", attempt="first") == 1

    fail(app, job, "image_undecodable")  # permanent: the job fails at once
    failed = scrape(app)
    assert failed.value("portraits_jobs", status="running") == 0
    assert moved(running, failed, "portraits_job_transitions_total", from_status="running",
                 to_status="failed") == 1
    assert moved(running, failed, "portraits_job_failures_total", error_code="image_undecodable",
                 outcome="failed") == 1
    assert moved(running, failed, "portraits_job_run_seconds_count", status="failed") == 1
    assert moved(running, failed, "portraits_job_duration_seconds_count", status="failed") == 1

    retried_id = post_image(client, encode(synthetic_portrait(32, seed=1))).get_json()["id"]
    fail(app, claim(app, retried_id), "storage_unavailable")  # transient: queued again with backoff
    retried = scrape(app)
    assert retried.value("portraits_jobs", status="queued") == 1
    assert moved(failed, retried, "portraits_job_failures_total", error_code="storage_unavailable",
                 outcome="retried") == 1
    assert moved(failed, retried, "portraits_job_duration_seconds_count", status="queued") == 0


def test_oldest_queued_job_age_and_pending_callbacks_are_read_at_scrape_time(app, client):
    assert scrape(app).value("portraits_jobs_oldest_queued_seconds") == 0
    job_id = post_image(client, encode(synthetic_portrait(32))).get_json()["id"]
    with app.extensions["portraits"].engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET created_at = now() - interval '600 seconds' WHERE id = :id"),
                     {"id": job_id})
    assert 600 <= scrape(app).value("portraits_jobs_oldest_queued_seconds") < 700


def test_a_scrape_reports_unreachable_postgres_and_redis_instead_of_failing(settings, make_app):
    from tests.test_api import unreachable_db

    app = make_app(redis_url="redis://127.0.0.1:1/0", database_url=unreachable_db(settings.database_url))
    samples = scrape(app)
    assert samples.value("portraits_database_up") == 0 and samples.value("portraits_broker_up") == 0
    assert "portraits_jobs" not in samples.families  # unknown, not zero
    assert "portraits_job_transitions" in samples.families  # the process's own series still come


def test_sweeper_and_deliverer_count_what_they_did(make_app, keys, settings):
    receiver = Receiver()
    try:
        app = make_app(redis_url="redis://127.0.0.1:1/0")  # the submit cannot publish: the sweeper will
        key, _ = keys(partner="acme", callback_url=receiver.url)
        job_id = post_image(authed(app, key), encode(synthetic_portrait(32))).get_json()["id"]
        services = app.extensions["portraits"]
        before = scrape(app)
        report = sweep_once(services.sessions, make_celery(settings), settings, services.storage)
        assert report.published == 1
        fail(app, claim(app, job_id), "image_undecodable")
        assert deliver_due(services.sessions, settings)["delivered"] == 1
        after = scrape(app)
    finally:
        receiver.close()
    assert moved(before, after, "portraits_sweeper_passes_total", outcome="ok") == 1
    assert moved(before, after, "portraits_sweeper_actions_total", action="job_published") == 1
    assert moved(before, after, "portraits_webhook_deliveries_total", outcome="delivered") == 1
    assert moved(before, after, "portraits_webhook_delivery_seconds_count", outcome="delivered") == 1


def test_own_endpoint_serves_this_process_and_a_taken_port_is_not_fatal(caplog):
    assert metrics.serve(0, "127.0.0.1") is False  # 0 = none
    port = free_port()
    assert metrics.serve(port, "127.0.0.1") is True
    samples = scrape_url(f"http://127.0.0.1:{port}/metrics")
    assert "portraits_job_transitions" in samples.families and "process_cpu_seconds" in samples.families
    with caplog.at_level(logging.ERROR, logger="shared.metrics"):
        assert metrics.serve(port, "127.0.0.1") is False  # taken (by the one above): logged, no raise
    assert "cannot listen" in caplog.text


# ------------------------------------------------------------------------------------------------ logs
def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def json_log():
    """What the root logger writes, in the JSON format, with the job context filter (as configure())."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLines())
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_json_lines_of_a_submit_carry_its_job_and_partner(make_app, keys, json_log):
    app = make_app(redis_url="redis://127.0.0.1:1/0")  # so the submit also logs a warning of its own
    key, partner = keys(partner="acme")
    job_id = post_image(authed(app, key), encode(synthetic_portrait(32))).get_json()["id"]
    lines = [line for line in json_lines(json_log) if line.get("job_id") == job_id]
    transition = next(line for line in lines if line["logger"] == "jobs")
    assert transition["to"] == "queued" and transition["partner_id"] == str(partner.id)
    assert transition["level"] == "INFO" and transition["time"].endswith("+00:00")
    assert "job" not in transition  # the transition's fields are top-level, not nested
    warning = next(line for line in lines if "publishing" in line["message"])
    assert warning["partner_id"] == str(partner.id)


def test_a_request_binds_its_job_and_the_next_request_starts_clean(app, keys, json_log):
    key, partner = keys(partner="acme")
    job_id = str(uuid.uuid4())
    with app.test_request_context(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}):
        app.preprocess_request()  # the before_request hooks: auth, then the log context
        logging.getLogger("api.jobs").info("inside")
    logging.getLogger("api.jobs").info("after")
    inside, after = json_lines(json_log)
    assert inside["job_id"] == job_id and inside["partner_id"] == str(partner.id)
    assert "job_id" not in after and "partner_id" not in after


def test_gunicorn_conf_empties_the_metrics_folder_at_each_start(tmp_path, monkeypatch):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"an earlier run's counts")
    (folder / "README").write_text("not ours: kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.setenv("LOG_FORMAT", "text")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert sorted(p.name for p in folder.iterdir()) == ["README"]
    assert "logconfig_dict" not in conf  # text: gunicorn's own logging as it was
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["logconfig_dict"]["root"]["handlers"] == ["stderr"]
    environ = {}  # nothing named: a new temporary folder, removed at exit
    made = conf["fresh_multiproc_dir"](environ)
    try:
        assert os.path.isdir(made) and environ["PROMETHEUS_MULTIPROC_DIR"] == made == environ[conf["OWNED"]]
    finally:
        os.rmdir(made)


# ------------------------------------------------------------------------------- gunicorn, 2 workers
class Gunicorn:
    """The Procfile's api line, run as honcho runs it (a shell, PORT set), with JSON logs."""

    def __init__(self, settings, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = folder / "tmp"  # where gunicorn.conf.py makes its metrics folder (TMPDIR)
        self.tmp.mkdir(parents=True)
        self.log_path = folder / "gunicorn.log"
        procfile = (ROOT / "Procfile").read_text().splitlines()
        line = dict(ln.split(":", 1) for ln in procfile if ln.strip())["api"].strip()
        env = service_env(settings) | {"PORT": str(self.port), "LOG_FORMAT": "json", "TMPDIR": str(self.tmp),
                                       "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["/bin/sh", "-c", f"exec {line}"], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        poll(self._healthz, lambda ok: ok, timeout=90, interval=0.2)

    def _healthz(self) -> bool:
        assert self.proc.poll() is None, self.log()
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def metrics_folder(self) -> Path:
        (folder,) = self.tmp.glob("portraits-metrics-*")
        return folder

    def healthz_by_pid(self) -> dict[int, float]:
        """/healthz requests counted in each worker process's own file."""
        counts = {}
        for path in glob.glob(str(self.metrics_folder() / "counter_*.db")):
            for metric in MultiProcessCollector.merge([path]):
                for s in metric.samples:
                    if s.name == "portraits_http_requests_total" and s.labels["endpoint"] == "/healthz":
                        pid = int(Path(path).stem.split("_")[1])
                        counts[pid] = counts.get(pid, 0) + s.value
        return counts

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def gunicorn(settings, storage, tmp_path_factory):
    server = Gunicorn(settings, tmp_path_factory.mktemp("gunicorn"))
    yield server
    server.stop()


def get_healthz_on_new_connections(url: str, n: int) -> None:
    def one(_):
        assert requests.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=10).status_code == 200

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


HEALTHZ = {"method": "GET", "endpoint": "/healthz"}


def test_gunicorn_sums_every_workers_counts_and_keeps_a_dead_workers(gunicorn):
    sent = sum(gunicorn.healthz_by_pid().values())  # the start-up probes
    while len(gunicorn.healthz_by_pid()) < 2:  # until both workers have answered some
        assert sent < 800, f"one worker answered all {sent} requests: {gunicorn.healthz_by_pid()}"
        get_healthz_on_new_connections(gunicorn.url, 40)
        sent += 40
    by_pid = gunicorn.healthz_by_pid()
    assert sum(by_pid.values()) == sent
    for _ in range(6):  # whichever worker answers the scrape, it reports everyone's
        samples = scrape_url(f"{gunicorn.url}/metrics")
        assert samples.value("portraits_http_requests_total", **HEALTHZ, status="200") == sent
        assert samples.value("portraits_http_request_seconds_count", **HEALTHZ) == sent

    os.kill(next(iter(by_pid)), signal.SIGKILL)  # gunicorn replaces it (child_exit → mark_process_dead)
    poll(lambda: gunicorn.log().count("Booting worker"), lambda booted: booted >= 3, timeout=60)
    for _ in range(6):
        samples = scrape_url(f"{gunicorn.url}/metrics")
        assert samples.value("portraits_http_requests_total", **HEALTHZ, status="200") == sent


def test_gunicorn_json_lines_carry_the_job_and_the_folder_goes_at_exit(gunicorn, keys):
    key, partner = keys(partner="acme")
    image = ("p.png", encode(synthetic_portrait(32)), "image/png")
    response = requests.post(f"{gunicorn.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"},
                             files={"image": image}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    folder = gunicorn.metrics_folder()
    gunicorn.stop()
    lines = [json.loads(line) for line in gunicorn.log().splitlines() if line.strip()]  # every line is JSON
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    (transition,) = [line for line in lines if line.get("job_id") == job_id and line["logger"] == "jobs"]
    assert transition["to"] == "queued" and transition["partner_id"] == str(partner.id)
    assert not folder.exists()  # the temporary metrics folder is removed when gunicorn exits


# ------------------------------------------------------------------------------------ a real worker
def test_worker_serves_its_own_metrics_and_logs_json_lines_with_the_job_id(settings, client, tmp_path):
    port = free_port()
    worker = WorkerProcess(settings, tmp_path / "worker.log",
                           env={"METRICS_PORT": str(port), "LOG_FORMAT": "json"}).start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        before = scrape_url(url)  # it answers before any task
        job_id = post_image(client, encode(synthetic_portrait(64))).get_json()["id"]
        job, _ = poll(lambda: client.get(f"/v1/jobs/{job_id}").get_json(),
                      lambda j: j["status"] not in ("queued", "running"), timeout=120)
        assert job["status"] == "succeeded", job
        after = scrape_url(url)
    finally:
        worker.stop()
    assert moved(before, after, "portraits_worker_tasks_total", outcome="succeeded") == 1
    assert moved(before, after, "portraits_job_transitions_total", from_status="running",
                 to_status="succeeded") == 1
    assert moved(before, after, "portraits_job_run_seconds_count", status="succeeded") == 1
    assert moved(before, after, "portraits_job_duration_seconds_count", status="succeeded") == 1
    assert moved(before, after, "portraits_model_seconds_count", model=job["model"]["name"],
                 version=job["model"]["version"], device="cpu") == 1
    for stage in metrics.WORKER_STAGES:  # read, decode, encode, store, record: each once, for some time
        assert moved(before, after, "portraits_worker_stage_seconds_count", stage=stage) == 1, stage
        assert moved(before, after, "portraits_worker_stage_seconds_sum", stage=stage) > 0, stage

    # Every line is JSON (no banner), but the notice Celery itself prints on stdout when it is stopped.
    text = [line for line in worker.log().splitlines() if line.strip() and not line.startswith("{")]
    assert text == ["worker: Warm shutdown (MainProcess)"], text
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert any(line["message"].endswith(" ready.") for line in lines)
    mine = [line for line in lines if line.get("job_id") == job_id]
    assert {(line.get("from"), line.get("to")) for line in mine if line["logger"] == "jobs"} == {
        ("queued", "running"), ("running", "succeeded")}
    assert all(line["partner_id"] == mine[0]["partner_id"] is not None for line in mine)  # bound at the claim
    # The model was loaded and run once as the worker started (MODEL_PRELOAD), outside any job; that
    # run is not the job's, so portraits_model_seconds moved once, above.
    (loaded,) = [line for line in lines if line["message"].startswith("loaded model")]
    (ran,) = [line for line in lines if line["message"].startswith("ran the model once on a blank")]
    assert "job_id" not in loaded and "job_id" not in ran and loaded["logger"] == ran["logger"] == "worker.runtime"
