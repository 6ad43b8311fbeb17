"""The hostile corpus (tests/hostile/corpus.py) against the real stack: every file through the Flask API,
then every accepted one, and a sample of refused ones planted straight in storage, through a real
Celery worker process. Every file gets a clear 4xx or a correct result; no 5xx; the worker never dies."""
from __future__ import annotations

import io
import time
import uuid
from collections import Counter

import pytest
from PIL import Image
from sqlalchemy import select

from shared.accounts import Partner
from shared.models import Job, JobStatus
from shared.queue import publish_upscale
from shared.storage import original_key
from tests.conftest import authed
from tests.hostile.corpus import Case, build
from tests.imagegen import post_image
from tests.processes import WorkerProcess

DECODE_TIMEOUT = 3  # the hostile worker's DECODE_TIMEOUT_SECONDS: its hanging decoder is stopped after this
# Refused files planted in storage behind the API's back (a damaged object, or an API bug): the worker
# must fail each one readably. One or two of every kind of refusal.
PLANTED = ["empty/zero-bytes", "not-an-image/html", "not-an-image/random-bytes", "not-an-image/gif-still",
           "header-only/bmp-header-only", "truncated/png@100", "truncated/jpeg@819",
           "truncated/webp-lossy@165", "truncated/tiff@1187", "bit-flipped/png-header@16.0",
           "huge-dimensions/png-100000x100000",
           "huge-dimensions/jpeg-65535x65535", "huge-dimensions/bmp-8000x6000",
           "huge-dimensions/tiff-4294967295x4294967295", "bomb/png-8000x8000", "bomb/png-12000x12000",
           "bomb/png-ztxt-chunk", "broken/png-idat-not-zlib", "broken/tiff-strip-count-huge",
           "broken/jpeg-zero-components", "polyglot/zip-then-png"]


class HostileWorker(WorkerProcess):
    """The real worker whose decoder aborts or hangs on the corpus's two marker sizes."""

    celery_app = "tests.hostile.hostile_worker"


@pytest.fixture(scope="module")
def worker_settings(settings, tmp_path_factory):
    """The suite's settings with a private Redis: the shared one's database 15 is flushed by every
    concurrent test run on the machine (and other runs' workers would take these jobs)."""
    from devstack.ports import free_port
    from tests.chaos.harness import PrivateRedis, redis_binary

    update = {"decode_timeout_seconds": DECODE_TIMEOUT}
    if redis_binary() is None:  # no redis-server here: share the suite's Redis
        yield settings.model_copy(update=update)
        return
    server = PrivateRedis(free_port(), tmp_path_factory.mktemp("hostile-redis")).start()
    try:
        yield settings.model_copy(update={**update, "redis_url": server.url})
    finally:
        server.kill()


@pytest.fixture(scope="module")
def hostile_worker(worker_settings, storage, tmp_path_factory):
    process = HostileWorker(worker_settings, tmp_path_factory.mktemp("hostile-worker") / "worker.log",
                            name="hostile").start()
    yield process
    process.stop()


def check_answer(case: Case, status: int, body) -> str | None:
    """What is wrong with the API's answer to `case`, or None when it is right."""
    if status >= 500:
        return f"server error {status}: {body}"
    if status == 202:
        if case.expect == "reject":
            return f"accepted, but must be refused ({case.reason or case.status})"
        if case.size and (body["input"]["width"], body["input"]["height"]) != case.size:
            return f"accepted as {body['input']}, expected {case.size}"
        return None
    if not 400 <= status < 500:
        return f"unexpected status {status}"
    error = (body or {}).get("error") if isinstance(body, dict) else None
    if not error or not error.get("message") or not error.get("code"):
        return f"{status} without a JSON error body: {body!r}"
    if case.expect == "accept":
        return f"refused ({status} {error['message']}), but must be accepted"
    if case.expect == "reject" and status != case.status:
        return f"status {status}, expected {case.status}: {error['message']}"
    if status == 422 and (error["code"] != "invalid_image" or error.get("field") != "image"
                          or "image" not in error["message"] or not error.get("reason")):
        return f"422 without code invalid_image / field image / reason: {error}"
    if case.reason and error.get("reason") != case.reason:
        return f"reason {error.get('reason')!r}, expected {case.reason!r}: {error['message']}"
    return None


def test_every_hostile_upload_gets_a_clear_answer(client, app, storage):
    cases = build()
    assert len(cases) >= 200
    before = set(original_objects(storage))  # the bucket is shared with the rest of the suite
    tally, problems, accepted = Counter(), [], 0
    started = time.monotonic()
    for case in cases:
        response = post_image(client, case.data, case.filename)
        body = response.get_json(silent=True)
        tally["accepted" if response.status_code == 202 else
              "server errors" if response.status_code >= 500 else f"refused {response.status_code}"] += 1
        accepted += response.status_code == 202
        problem = check_answer(case, response.status_code, body)
        if problem:
            problems.append(f"{case.name}: {problem}")
    elapsed = time.monotonic() - started
    print(f"\n{len(cases)} hostile uploads in {elapsed:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    assert tally["server errors"] == 0, problems
    assert not problems, "\n".join(problems)
    with app.extensions["portraits"].sessions() as session:  # refusals leave no job and no object behind
        assert len(session.scalars(select(Job.id)).all()) == accepted
    assert len(set(original_objects(storage)) - before) == accepted


def test_every_hostile_upload_gets_a_clear_answer_from_faces(client):
    """POST /v1/faces checks and decodes uploads in the API process as POST /v1/jobs does, then runs the
    face detector on the pixels: the same answer for every file (200 where a job would be accepted, with
    the photo's size), never a server error."""
    tally, problems = Counter(), []
    for case in build():
        response = post_image(client, case.data, case.filename, path="/v1/faces")
        body = response.get_json(silent=True)
        ok = response.status_code == 200
        tally["found faces" if ok and body["faces"] else "no face" if ok else
              "server errors" if response.status_code >= 500 else f"refused {response.status_code}"] += 1
        as_job = {"input": body["image"]} if ok else body  # what check_answer reads of an accepted upload
        problem = check_answer(case, 202 if ok else response.status_code, as_job)
        if problem:
            problems.append(f"{case.name}: {problem}")
    print(f"\nPOST /v1/faces: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    assert tally["server errors"] == 0, problems
    assert not problems, "\n".join(problems)


def original_objects(storage) -> list[str]:
    return [o.object_name for o in storage.client.list_objects(storage.bucket, recursive=True)
            if o.object_name.endswith("/original")]


@pytest.mark.e2e
def test_accepted_uploads_are_upscaled_and_no_decoder_failure_kills_the_worker(
        make_app, keys, storage, worker_settings, hostile_worker):
    app = make_app(redis_url=worker_settings.redis_url)  # publishes where the hostile worker listens
    client = authed(app, keys(partner="acme")[0])
    services = app.extensions["portraits"]
    by_name = {case.name: case for case in build()}
    submitted: dict[str, tuple[Case, dict]] = {}
    for case in by_name.values():
        if case.expect in ("accept", "either"):
            response = post_image(client, case.data, case.filename)
            assert response.status_code < 500, (case.name, response.get_json())
            if response.status_code == 202:
                submitted[response.get_json()["id"]] = (case, response.get_json()["input"])
    planted = {plant(services, by_name[name]): by_name[name] for name in PLANTED}

    final = wait_terminal(services, [*submitted, *planted], timeout=150, worker=hostile_worker)
    problems, tally = [], Counter()
    for job_id, (case, size) in submitted.items():
        job = final[job_id]
        tally[f"{job.status.value}"] += 1
        if job.status.value != case.worker:
            problems.append(f"{case.name}: {job.status.value} ({job.error}), expected {case.worker}")
        elif job.status is JobStatus.SUCCEEDED:
            expected = (4 * size["width"], 4 * size["height"])
            result = Image.open(io.BytesIO(storage.get(job.result_key)))
            if (job.output_width, job.output_height) != expected or result.size != expected:
                problems.append(f"{case.name}: output {job.output_width}x{job.output_height}, "
                                f"file {result.size}, expected {expected}")
        elif case.worker_error != job.error_code or job.attempts != 1:
            problems.append(f"{case.name}: error {job.error_code!r} after {job.attempts} attempts, expected "
                            f"{case.worker_error!r} after 1")
    for job_id, case in planted.items():
        job = final[job_id]
        tally[f"planted {job.status.value}"] += 1
        readable = job.error_code in ("image_undecodable", "image_not_allowed") and job.error
        if job.status is not JobStatus.FAILED or not readable or job.attempts != 1:
            problems.append(f"planted {case.name}: {job.status.value} after {job.attempts}: {job.error}")
        print(f"  planted {case.name}: {job.status.value}: {job.error}")
    print(f"\nworker: {len(submitted)} accepted + {len(planted)} planted jobs: "
          + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    assert not problems, "\n".join(problems)
    assert hostile_worker.proc.poll() is None, hostile_worker.log()
    assert hostile_worker.log().count(" ready.") == 1, hostile_worker.log()  # never restarted


def plant(services, case: Case) -> str:
    """Store `case.data` as a job's original without the API's checks, and queue the job."""
    with services.sessions() as session:
        partner_id = session.scalar(select(Partner.id).where(Partner.name == "acme"))  # the client's partner
    job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, partner_id=partner_id, input_key="",
              input_content_type="image/png", input_width=1, input_height=1)
    job.input_key = original_key(partner_id, job.id)
    services.storage.put(job.input_key, case.data, "image/png")
    with services.sessions() as session, session.begin():
        session.add(job)
    publish_upscale(services.celery, job.id)
    return str(job.id)


def wait_terminal(services, job_ids: list[str], timeout: float, worker: WorkerProcess) -> dict[str, Job]:
    deadline = time.monotonic() + timeout
    ids = [uuid.UUID(j) for j in job_ids]
    while True:
        with services.sessions() as session:
            jobs = session.scalars(select(Job).where(Job.id.in_(ids))).all()
        done = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        pending = [j for j in jobs if j.status not in done]
        if not pending and len(jobs) == len(ids):
            return {str(j.id): j for j in jobs}
        assert worker.proc.poll() is None, f"the worker died:\n{worker.log()[-5000:]}"
        assert time.monotonic() < deadline, (f"{len(pending)} jobs not finished after {timeout} s:\n"
                                             f"{worker.log()[-5000:]}")
        time.sleep(0.5)
