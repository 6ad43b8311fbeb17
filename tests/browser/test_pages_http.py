"""The pages' rules through the Flask test client (no browser needed): sessions and their cookie, CSRF,
roles and tenancy, uploads through the API's own checks with refusals in plain words, prints fitted at
300 dpi, the dashboard's requeue and cancel. tests/browser/test_pages.py drives the same pages in
Chromium against the running processes."""
from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
from PIL import Image

from api.pages import messages
from model.print_size import fit_to_print, parse_print_size
from shared import lifecycle
from shared.accounts import ApiKey
from shared.errors import ServiceError
from shared.failures import failure
from shared.models import Job, JobStatus
from shared.storage import result_key
from tests.conftest import authed
from tests.imagegen import encode, synthetic_portrait

SECRET = "test-session-secret-" * 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pages(make_app):
    return make_app(secret_key=SECRET)


def csrf_token(client, path: str = "/") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, key: str, **extra):
    return client.post("/sign-in", data={"api_key": key, "csrf_token": csrf_token(client), **extra})


def upload(client, data: bytes, name: str = "portrait.png", json: bool = False):
    token = csrf_token(client)
    headers = {"Accept": "application/json"} if json else {}
    return client.post("/jobs", data={"csrf_token": token, "idempotency_key": f"t-{uuid.uuid4()}",
                                      "image": (io.BytesIO(data), name)},
                       content_type="multipart/form-data", headers=headers)


def signed_in(pages, keys, **who):
    client = pages.test_client()
    key, partner = keys(**who)
    assert sign_in(client, key).status_code == 303
    return client, key, partner


def test_the_session_cookie_holds_no_key_and_is_httponly_lax(pages, keys):
    client = pages.test_client()
    key, _ = keys(partner="acme")
    response = sign_in(client, key)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("portraits_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the next test
    assert key not in cookie and key[3:20] not in client.get_cookie("portraits_session").decoded_value
    page = client.get("/")
    assert page.status_code == 200 and "Restore a portrait" in page.get_data(as_text=True)
    assert key not in page.get_data(as_text=True)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("how", ["https", "setting", "proxy"])
def test_the_cookie_is_secure_behind_tls(make_app, keys, how):
    app = make_app(secret_key=SECRET, session_cookie_secure=how == "setting",
                   trusted_proxies=int(how == "proxy"))
    client = app.test_client()
    base = {"base_url": "https://portraits.example"} if how == "https" else {}
    headers = {"X-Forwarded-Proto": "https"} if how == "proxy" else {}
    response = client.get("/", headers=headers, **base)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("portraits_session="))
    assert "Secure" in cookie


def test_forwarded_proto_is_ignored_without_a_trusted_proxy(pages):
    response = pages.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in next(c for c in response.headers.getlist("Set-Cookie") if "portraits_session" in c)


def test_a_bad_key_is_refused_in_plain_words_and_sign_out_ends_the_session(pages, keys):
    client = pages.test_client()
    response = sign_in(client, "pk_not-a-key")
    assert response.status_code == 401 and messages.BAD_KEY in response.get_data(as_text=True)
    client, _, _ = signed_in(pages, keys, partner="acme")
    token = csrf_token(client)
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/jobs").status_code == 302  # back to the sign-in page


def test_forms_without_their_csrf_token_are_refused(pages, keys):
    client = pages.test_client()
    key, _ = keys(partner="acme")
    response = client.post("/sign-in", data={"api_key": key})
    assert response.status_code == 400 and "form has expired" in response.get_data(as_text=True)
    client, _, _ = signed_in(pages, keys, partner="acme")
    response = client.post("/jobs", data={"image": (io.BytesIO(encode(synthetic_portrait(32))), "p.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert client.post("/sign-out", data={"csrf_token": "forged"}).status_code == 400


def test_roles_partner_pages_and_admin_dashboard(pages, keys):
    partner, _, _ = signed_in(pages, keys, partner="acme")
    refused = partner.get("/admin")
    assert refused.status_code == 403 and "needs an admin key" in refused.get_data(as_text=True)
    assert partner.get("/admin/jobs").status_code == 403
    admin, _, _ = signed_in(pages, keys, admin=True)
    assert admin.get("/").headers["Location"] == "/admin"
    assert admin.get("/admin").status_code == 200
    assert admin.get("/jobs").status_code == 403
    anonymous = pages.test_client()
    response = anonymous.get("/admin/jobs?status=failed")
    assert response.status_code == 302 and response.headers["Location"].startswith("/?next=")
    assert anonymous.get("/jobs/x/status", headers={"Accept": "application/json"}).status_code == 401


def test_sign_in_goes_back_only_to_a_page_of_this_site(pages, keys):
    key, _ = keys(admin=True)
    assert sign_in(pages.test_client(), key, next="/admin/jobs?q=x").headers["Location"] == "/admin/jobs?q=x"
    for outside in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example"):
        assert sign_in(pages.test_client(), key, next=outside).headers["Location"] == "/admin"


def test_a_revoked_key_ends_its_sessions(pages, keys):
    client, key, _ = signed_in(pages, keys, partner="acme")
    with pages.extensions["portraits"].sessions() as db, db.begin():
        db.query(ApiKey).update({ApiKey.revoked_at: ApiKey.created_at})
    assert client.get("/jobs").status_code == 302


def test_without_a_secret_key_the_pages_are_off_and_the_api_is_not(make_app, keys):
    app = make_app()
    assert app.test_client().get("/").status_code == 503
    assert "no SECRET_KEY" in app.test_client().get("/").get_data(as_text=True)
    assert authed(app, keys(partner="acme")[0]).get("/v1/jobs").status_code == 200


def test_sign_in_attempts_are_rate_limited(make_app):
    app = make_app(secret_key=SECRET, rate_limit_sign_in="2/minute")
    client = app.test_client()
    answers = [sign_in(client, "pk_wrong").status_code for _ in range(3)]
    assert answers == [401, 401, 429]


def test_upload_through_the_api_path_and_its_page(pages, keys):
    client, key, _ = signed_in(pages, keys, partner="acme")
    response = upload(client, encode(synthetic_portrait(40)))
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    api = authed(pages, key).get(f"/v1/jobs/{job_id}").get_json()  # the same job, the same partner
    assert api["status"] == "queued" and api["input"] == {"width": 40, "height": 40}
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Waiting for a free worker" in page and 'id="job-progress"' in page
    status = client.get(f"/jobs/{job_id}/status").get_json()
    assert status["job"]["id"] == job_id and status["state"]["busy"] is True
    original = client.get(f"/jobs/{job_id}/original")
    assert original.status_code == 200 and Image.open(io.BytesIO(original.data)).size == (40, 40)
    listed = client.get("/jobs?status=queued").get_data(as_text=True)
    assert job_id[:8] in listed and job_id[:8] not in client.get("/jobs?status=failed").get_data(as_text=True)
    answer = upload(client, encode(synthetic_portrait(40)), json=True)
    assert answer.status_code == 202 and answer.get_json()["url"].startswith("/jobs/")


@pytest.mark.parametrize("data, status, reason", ids=["text", "cut-header", "cut-data", "empty"], argvalues=[
    (b"just some text", 422, "unsupported_format"),
    (encode(synthetic_portrait(40))[:20], 422, "unreadable"),
    (encode(synthetic_portrait(40))[:60], 422, "damaged"),
    (b"", 400, None),
])
def test_refused_files_are_explained_in_plain_words(pages, keys, data, status, reason):
    client, _, _ = signed_in(pages, keys, partner="acme")
    page = upload(client, data)
    assert page.status_code == status
    text = page.get_data(as_text=True)
    expected = messages.plain("invalid_image" if reason else "invalid_upload", "", reason=reason,
                              accepted="JPEG, PNG, WebP, BMP, TIFF")
    assert expected.split(".")[0] in text.replace("&#39;", "'")
    answer = upload(client, data, json=True)
    assert answer.status_code == status and answer.get_json()["error"]["plain"].split(".")[0] in expected


def test_every_refusal_reason_and_error_code_has_plain_words():
    reasons = set(re.findall(r'_refuse\("(\w+)"', (ROOT / "api" / "uploads.py").read_text()))
    assert reasons and reasons <= set(messages.UPLOAD_REASONS)
    codes = {cls.code for cls in _subclasses(ServiceError)} - {"invalid_image", "error"}
    assert codes <= set(messages.CODES), codes - set(messages.CODES)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_another_partners_job_is_not_found_anywhere(pages, keys):
    client, _, _ = signed_in(pages, keys, partner="acme")
    job_id = upload(client, encode(synthetic_portrait(40))).headers["Location"].rsplit("/", 1)[1]
    other, _, _ = signed_in(pages, keys, partner="other")
    for path in ("", "/status", "/original", "/result.png", "/print-11x14in.png"):
        assert other.get(f"/jobs/{job_id}{path}").status_code == 404, path
    assert other.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf_token(other)}).status_code == 404
    assert job_id[:8] not in other.get("/jobs").get_data(as_text=True)


def _succeed(app, job_id: str, size: int) -> None:
    """Mark the job succeeded with a real result in storage, as a worker would."""
    services = app.extensions["portraits"]
    with services.sessions() as db, db.begin():
        job = lifecycle.claim(db, uuid.UUID(job_id), "test-worker", 30)
        key = result_key(job.partner_id, job.id)
        services.storage.put(key, encode(synthetic_portrait(size)), "image/png")
        assert lifecycle.succeed(db, job, result_key=key, output_width=size, output_height=size)


def test_a_result_downloads_as_is_and_fitted_to_prints_at_300_dpi(pages, keys):
    client, _, _ = signed_in(pages, keys, partner="acme")
    job_id = upload(client, encode(synthetic_portrait(40))).headers["Location"].rsplit("/", 1)[1]
    _succeed(pages, job_id, 160)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "data-compare" in page and "print-11x14in.png" in page
    plain = client.get(f"/jobs/{job_id}/result.png?download=1")
    assert plain.headers["Content-Disposition"].startswith("attachment")
    assert Image.open(io.BytesIO(plain.data)).size == (160, 160)
    for slug, size in (("11x14in", "11x14in"), ("8x10in", "8x10in"), ("a4", "21x29.7cm")):
        fitted = Image.open(io.BytesIO(client.get(f"/jobs/{job_id}/print-{slug}.png").data))
        assert fitted.size == fit_to_print(160, 160, parse_print_size(size), 300)
        assert [round(d) for d in fitted.info["dpi"]] == [300, 300]
    assert client.get(f"/jobs/{job_id}/print-poster.png").status_code == 400


def test_dashboard_counts_failed_jobs_requeue_and_cancel(pages, keys):
    partner, _, _ = signed_in(pages, keys, partner="acme")
    ids = [upload(partner, encode(synthetic_portrait(32, seed=i))).headers["Location"].rsplit("/", 1)[1]
           for i in range(3)]
    sessions = pages.extensions["portraits"].sessions
    for job_id in ids[:2]:
        with sessions() as db, db.begin():
            job = lifecycle.claim(db, uuid.UUID(job_id), "w", 30)
            lifecycle.fail_or_retry(db, job, failure("original_missing"), detail="NoSuchKey: gone", backoff=0)
    admin, _, _ = signed_in(pages, keys, admin=True)
    home = admin.get("/admin").get_data(as_text=True)
    assert "acme" in home and "original_missing" in home and ids[0][:8] in home
    found = admin.get("/admin/jobs", query_string={"q": "NoSuchKey", "window": "hour"}).get_data(as_text=True)
    assert "2 jobs found" in found
    detail = admin.get(f"/admin/jobs/{ids[0]}").get_data(as_text=True)
    assert "NoSuchKey: gone" in detail  # the internal detail, for admins

    token = csrf_token(admin, "/admin")
    assert "Give a reason" in admin.post("/admin/requeue", data={"csrf_token": token, "job_id": ids[:2]},
                                         follow_redirects=True).get_data(as_text=True)
    done = admin.post("/admin/requeue", data={"csrf_token": token, "job_id": ids, "reason": "restored"},
                      follow_redirects=True).get_data(as_text=True)
    assert "Requeued 2 of 3 selected jobs" in done
    with sessions() as db:
        assert {db.get(Job, uuid.UUID(i)).status for i in ids} == {JobStatus.QUEUED}
        events = lifecycle.events(db, uuid.UUID(ids[0]))
    assert events[-1].reason == "restored" and events[-1].actor.startswith("key:")

    cancelled = admin.post(f"/admin/jobs/{ids[2]}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "Cancelled." in cancelled.get_data(as_text=True)
    again = admin.post(f"/admin/jobs/{ids[2]}/requeue", data={"csrf_token": token, "reason": "retry"},
                       follow_redirects=True)
    assert "Requeued" in again.get_data(as_text=True)


def test_make_run_writes_a_secret_key_once_and_keeps_it(tmp_path):
    from devstack.cli import _write_env

    env = tmp_path / "env"
    _write_env(env, {})
    first = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)["SECRET_KEY"]
    _write_env(env, {})
    assert len(first) == 64 and f"SECRET_KEY={first}\n" in env.read_text()  # the same after a rewrite
    assert env.stat().st_mode & 0o777 == 0o600
