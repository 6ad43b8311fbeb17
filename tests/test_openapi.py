"""The OpenAPI document (api/openapi.yaml, served at /openapi.json): valid OpenAPI 3.1, in step with the
app's routes, and true of the app. schemathesis fuzzes every operation against the real stack
(Postgres, Redis, S3) and fails on any 5xx and on any response the document does not describe: status
code, headers, content type or body.
"""
from __future__ import annotations

import re
import uuid
from collections import defaultdict

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)
from sqlalchemy.engine import make_url

from api.openapi import load_document
from shared import lifecycle
from shared.failures import failure
from shared.storage import result_key
from tests.conftest import authed
from tests.imagegen import encode, post_image, synthetic_portrait

METHODS = {"get", "put", "post", "delete", "patch"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
MAX_EXAMPLES = 25  # per operation in the fuzzing phase; the examples and coverage phases add their own
SEED = 20261124  # with deterministic generation: the same requests on every run

# Real images for the multipart field `image` (its `encoding` names these media types), mixed with junk,
# so the fuzzer creates jobs (202, 200 on an idempotent replay) as well as refused uploads (422).
_PNG = [encode(synthetic_portrait(size, seed=size)) for size in (16, 24, 40)]
_JPEG = [encode(synthetic_portrait(size, seed=size), "JPEG") for size in (20, 32)]
schemathesis.openapi.media_type("image/png", st.sampled_from(_PNG) | st.binary(min_size=1, max_size=64))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from(_JPEG) | st.binary(max_size=64))


def flask_path(rule: str) -> str:
    """/v1/jobs/<job_id> → /v1/jobs/{job_id} (also <int:x> → {x})."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items()
            for method in item if method in METHODS}


# ------------------------------------------------------------------------------------------ the document
def test_document_is_valid_openapi_3_1():
    validator = pytest.importorskip("openapi_spec_validator")
    document = load_document()
    assert document["openapi"].startswith("3.1.")
    validator.validate(document)  # raises, naming the offending part, when invalid


def test_served_document_is_the_file_public_and_not_rate_limited(app):
    response = app.test_client().get("/openapi.json")  # no key: public
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == load_document()
    assert "X-RateLimit-Limit" not in response.headers  # exempt (api/limits.py)


# Blueprints that are not the JSON API: HTML pages for people and the Prometheus scrape endpoint.
NOT_API = {"static", "console", "dashboard", "metrics"}


def test_every_route_is_documented_and_nothing_else(app):
    routes = {(flask_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              if rule.endpoint.split(".")[0] not in NOT_API for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = documented_operations(load_document())
    assert routes - documented == set(), "routes missing from api/openapi.yaml"
    assert documented - routes == set(), "api/openapi.yaml documents routes the app does not have"


def test_security_matches_the_auth_rules():
    """/v1/admin needs an admin key, the rest of /v1 a partner key, everything else none (api/auth.py);
    every /v1 operation can answer 401, 403, 429 and 503 (before its view runs)."""
    document = load_document()
    for path, method in documented_operations(document):
        operation = document["paths"][path][method]
        expected = ([{"adminKey": []}] if path.startswith("/v1/admin/") else
                    [{"partnerKey": []}] if path.startswith("/v1/") else [])
        assert operation.get("security", document["security"]) == expected, (method, path)
        if path.startswith("/v1/"):
            assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)


# ------------------------------------------------------------------------------------------ schemathesis
@pytest.fixture
def fuzz_app(make_app):
    # Long polls of the queued and running jobs would hold the fuzzer for seconds each: wait ≤ 50 ms
    # here, and a larger `wait` (the document allows up to 60) is the 400 the document names.
    return make_app(rate_limit_submit="100000/minute", rate_limit_default="100000/minute",
                    poll_wait_max_seconds=0.05)


@pytest.fixture
def auth_headers(keys) -> dict[str, dict[str, str]]:
    partner, admin = keys(partner="acme")[0], keys(admin=True)[0]
    return {"partner": {"Authorization": f"Bearer {partner}"}, "admin": {"Authorization": f"Bearer {admin}"}}


def make_jobs(app, partner_headers: dict[str, str]) -> dict[str, str]:
    """One job of the partner's in each state: {state: id}."""
    client = app.test_client()

    def submit() -> str:
        response = post_image(client, _PNG[0], headers=partner_headers)
        assert response.status_code == 202, response.get_json()
        return response.get_json()["id"]

    ids = {state: submit() for state in ("queued", "running", "succeeded", "failed", "cancelled")}
    assert client.post(f"/v1/jobs/{ids['cancelled']}/cancel", headers=partner_headers).status_code == 200
    for state in ("running", "succeeded", "failed"):
        with app.extensions["portraits"].sessions() as session, session.begin():
            job = lifecycle.claim(session, uuid.UUID(ids[state]), "celery@test", 3600)
            lifecycle.heartbeat(session, job, 3600, 1, 4)
            if state == "succeeded":
                assert lifecycle.succeed(session, job, result_key=result_key(job.partner_id, job.id),
                                         output_width=64, output_height=64)
            elif state == "failed":
                lifecycle.fail_or_retry(session, job, failure("image_undecodable"), detail="test", backoff=0)
    return ids


def schemathesis_config(auth: dict[str, dict[str, str]]) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "suppress-health-check": ["all"],
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},  # the document declares no links
        "checks": {"enabled": False, **{check.__name__: {"enabled": True} for check in CHECKS}},
        "continue-on-failure": True,  # every failure of an operation, not just its first
        "operations": [  # the key each operation needs (the coverage phase also tries none: 401)
            {"include-path-regex": "^/v1/admin/", "headers": auth["admin"]},
            {"include-path-regex": "^/v1/(jobs|faces)", "headers": auth["partner"]},
        ],
    })


def test_api_conforms_to_its_document(fuzz_app, auth_headers):
    """schemathesis' examples, coverage and fuzzing phases (positive and negative data) on every operation.

    A generated job id is mostly replaced by one of the partner's real jobs (one in each state), so the
    200/202/302/409 answers are checked too. Failures are reported with a curl command to replay."""
    from schemathesis.engine import Status, events, from_schema

    job_ids = list(make_jobs(fuzz_app, auth_headers["partner"]).values())
    config = schemathesis_config(auth_headers)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app, config=config)

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict) or "job_id" not in path_parameters:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, *({**path_parameters, "job_id": i} for i in job_ids)])

    failures: dict[str, list[str]] = defaultdict(list)
    errors, operations, statuses = [], set(), defaultdict(set)
    requests = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            label = event.recorder.label
            operations.add(label)
            for interaction in event.recorder.interactions.values():
                requests += 1
                if interaction.response is not None and interaction.request.method == label.split()[0]:
                    statuses[label].add(interaction.response.status_code)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures[f"{label}: {failure.title}"].append(
                            f"{failure.message}\n    {check.failure_info.code_sample[:600]}".strip())
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info}\n{event.info.traceback}")
        elif isinstance(event, events.FatalError):
            errors.append(f"{event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            for failure in event.failures:
                failures[f"{failure.operation}: {failure.title}"].append(failure.message)
            print(f"\nschemathesis: {len(operations)} operations, {requests} requests in "
                  f"{event.running_time:.1f} s")
    for label in sorted(statuses):
        print(f"  {label}: {sorted(statuses[label])}")
    assert not errors, "\n".join(errors)
    assert not failures, "\n\n".join(
        f"{title} ({len(samples)}x), e.g.\n  {samples[0]}" for title, samples in sorted(failures.items()))
    # schemathesis leaves out the operation it loaded the document from; the tests above cover it.
    expected = {f"{method.upper()} {path}" for path, method in documented_operations(load_document())}
    assert operations == expected - {"GET /openapi.json"}


# ------------------------------------------------------------------ answers the fuzzer does not provoke
def conforms(app, method: str, path: str, response) -> None:
    """Check a response as the fuzzer does: status, headers, content type, body (a 5xx may be meant)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    job_id = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", path)
    template = path.replace(job_id.group(), "{job_id}") if job_id else path
    case = schema[template][method].Case(path_parameters={"job_id": job_id.group()} if job_id else None)
    case.validate_response(response, checks=[check for check in CHECKS if check is not not_a_server_error])


def unreachable_db(url: str) -> str:
    return make_url(url).set(port=1).render_as_string(hide_password=False)


def test_refusals_and_outages_conform(app, make_app, keys, settings):
    partner_key, admin_key = keys(partner="acme")[0], keys(admin=True)[0]
    partner, admin, anonymous = authed(app, partner_key), authed(app, admin_key), app.test_client()
    job_id = str(uuid.uuid4())

    response = anonymous.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 401
    conforms(app, "GET", f"/v1/jobs/{job_id}", response)
    response = partner.get("/v1/admin/jobs")
    assert response.status_code == 403
    conforms(app, "GET", "/v1/admin/jobs", response)
    response = admin.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 403
    conforms(app, "POST", f"/v1/jobs/{job_id}/cancel", response)

    response = partner.post("/v1/jobs", data=b"\0" * (settings.max_upload_bytes + 1),
                            content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 413
    conforms(app, "POST", "/v1/jobs", response)
    response = partner.post("/v1/faces", data=b"\0" * (settings.max_upload_bytes + 1),
                            content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 413
    conforms(app, "POST", "/v1/faces", response)

    limited = authed(make_app(rate_limit_submit="1/minute"), partner_key)
    assert post_image(limited, _PNG[0]).status_code == 202
    response = post_image(limited, _PNG[0])
    assert response.status_code == 429
    conforms(app, "POST", "/v1/jobs", response)

    database_down = make_app(database_url=unreachable_db(settings.database_url),
                             redis_url="redis://127.0.0.1:1/0")
    response = authed(database_down, partner_key).get(f"/v1/jobs/{job_id}")
    assert response.status_code == 503
    conforms(app, "GET", f"/v1/jobs/{job_id}", response)
    response = database_down.test_client().get("/readyz")
    assert response.status_code == 503
    conforms(app, "GET", "/readyz", response)


# ------------------------------------------------------ malformed input is the caller's error, never 5xx
MALFORMED = [  # (role, method, path, json body or multipart form), found by fuzzing (see the docstring)
    ("admin", "get", "/v1/admin/jobs?q=%00", None),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "limit": "AAA"}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "limit": [1]}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "limit": -1}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "limit": 10**30}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "q": ["x"]}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "since": 5}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r", "q": "a\0b"}),
    ("admin", "post", "/v1/admin/jobs/requeue", {"reason": "r\0"}),
    ("admin", "post", "/v1/admin/jobs/{failed}/requeue", {"reason": "r\0"}),
    ("admin", "post", "/v1/admin/jobs/{failed}/requeue", {"actor": "a\0"}),
    ("partner", "post", "/v1/jobs", {"callback_url": "http://[::1/cb"}),
    ("partner", "post", "/v1/jobs", {"callback_url": "https://memorial.example/a\0b"}),
    ("partner", "post", "/v1/jobs", {"crop": "1,2,3,4\0"}),
    ("partner", "post", "/v1/jobs", {"crop": "1,2,3,99999999999999"}),
]


@pytest.mark.parametrize("role, method, path, body", MALFORMED,
                         ids=[f"{m.upper()} {p} {b!r}"[:90] for _, m, p, b in MALFORMED])
def test_malformed_input_is_400_not_5xx(app, keys, role, method, path, body):
    """Each of these answered 500 (or 503, blaming the database for a NUL byte) when first fuzzed: a JSON
    field of the wrong type or out of range, or a NUL byte, which Postgres text cannot hold."""
    headers = {"partner": {"Authorization": f"Bearer {keys(partner='acme')[0]}"},
               "admin": {"Authorization": f"Bearer {keys(admin=True)[0]}"}}
    jobs = make_jobs(app, headers["partner"])
    client = authed(app, headers[role]["Authorization"].split()[1])
    path = path.format(**jobs)
    if path == "/v1/jobs":
        response = post_image(client, _PNG[0], form=body)
    else:
        response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == 400, (response.status_code, response.get_json())
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_listing_pages_and_bodies_that_are_not_json_objects_conform(app, keys):
    """What the fuzzer seldom sends: a page with a next_cursor, an edited cursor, and admin bodies that
    are malformed JSON, nested past the decoder's recursion limit, or not an object (all 400, not 500)."""
    partner_key, admin_key = keys(partner="acme")[0], keys(admin=True)[0]
    partner, admin = authed(app, partner_key), authed(app, admin_key)
    jobs = make_jobs(app, {"Authorization": f"Bearer {partner_key}"})
    response = partner.get("/v1/jobs?limit=2")
    assert response.status_code == 200 and response.get_json()["next_cursor"]
    conforms(app, "GET", "/v1/jobs", response)
    response = partner.get(f"/v1/jobs?cursor={response.get_json()['next_cursor']}x")
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "cursor"
    conforms(app, "GET", "/v1/jobs", response)
    for body in (b'{"reason": ', b"[" * 50_000, b'["reason"]'):
        for path in (f"/v1/admin/jobs/{jobs['failed']}/requeue", "/v1/admin/jobs/requeue"):
            response = admin.post(path, data=body, content_type="application/json")
            assert response.status_code == 400, (path, body[:10], response.status_code)
            assert response.get_json()["error"]["field"] == "body"
            conforms(app, "POST", path, response)
