"""What bench/poll_load.py runs against: the API started as the Procfile starts it, and its seeded data.

- `seed`: one partner with 100,000 jobs (direct SQL: a mix of statuses as a busy partner has them),
  its API keys, a second partner with one job (for the tenancy check), and the request plans for
  bench/loadgen.py.
- `ApiStack`: the API of a checkout as the Procfile runs it (tests/api_process.py), plus the checks
  made before the load.
"""
from __future__ import annotations

import json
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared.accounts import PARTNER, create_key, create_partner
from tests.api_process import ApiProcess

SEED_JOBS = """
INSERT INTO jobs (id, status, partner_id, created_at, updated_at, started_at, finished_at, attempts,
                  attempts_allowed, cancel_requested, input_key, input_content_type, input_width,
                  input_height, result_key, output_width, output_height, progress_done, progress_total,
                  error, error_code, model_name, model_version)
SELECT gen_random_uuid(), s.status, :partner, now() - g * interval '1 minute', now(),
       CASE WHEN s.status <> 'queued' THEN now() - g * interval '1 minute' END,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN now() - g * interval '1 minute' END,
       CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END, 3, false, 'partners/bench/original', 'image/png',
       180, 220, CASE WHEN s.status = 'succeeded' THEN 'partners/bench/result.png' END,
       CASE WHEN s.status = 'succeeded' THEN 720 END, CASE WHEN s.status = 'succeeded' THEN 880 END,
       CASE WHEN s.status = 'running' THEN 3 END, CASE WHEN s.status = 'running' THEN 8 END,
       CASE WHEN s.status = 'failed' THEN 'the image could not be decoded' END,
       CASE WHEN s.status = 'failed' THEN 'image_unreadable' END, 'espcn_x4', '1.1.0'
FROM generate_series(1, :rows) AS g,
     LATERAL (SELECT (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                            'failed', 'queued', 'running', 'cancelled'])[g % 10 + 1] AS status) AS s
"""


def seed(database_url: str, folder: Path, rows: int, keys: int) -> dict:
    """Seed the database; write the GET and POST plans (bench/loadgen.py) into `folder`."""
    from tests.imagegen import encode, synthetic_portrait

    engine = create_engine(database_url)
    with Session(engine) as s, s.begin():
        partner, other = create_partner(s, "bench-poll"), create_partner(s, "bench-other")
        secrets = [create_key(s, role=PARTNER, name=f"poll-{i}", partner=partner)[1] for i in range(keys)]
        other_key = create_key(s, role=PARTNER, name="other", partner=other)[1]
        partner_id, other_id = partner.id, other.id
    with engine.begin() as conn:
        conn.execute(text(SEED_JOBS), {"partner": partner_id, "rows": rows})
        conn.execute(text(SEED_JOBS), {"partner": other_id, "rows": 1})
        ids = [str(i) for i in conn.scalars(text(
            "SELECT id FROM jobs WHERE partner_id = :p ORDER BY random() LIMIT 5000"), {"p": partner_id})]
        other_job = str(conn.scalar(text("SELECT id FROM jobs WHERE partner_id = :p"), {"p": other_id}))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # as a table that has been there a while: no autovacuum mid-run
    engine.dispose()
    boundary = "benchboundary7d1f"
    image = encode(synthetic_portrait(48))
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    (folder / "post.body").write_bytes(body)
    plans = {"get": {"method": "GET", "requests": [[f"/v1/jobs/{job}", secrets[i % keys]]
                                                   for i, job in enumerate(ids)]},
             "post": {"method": "POST", "requests": [["/v1/jobs", key] for key in secrets],
                      "body_file": str(folder / "post.body"),
                      "content_type": f"multipart/form-data; boundary={boundary}"}}
    paths = {}
    for name, plan in plans.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(plan))
    paths.update(keys=secrets, own_job=ids[0], other_job=other_job, other_key=other_key,
                 image_bytes=len(image))
    return paths


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


class ApiStack(ApiProcess):
    """A checkout's API under load: its own job answers 200, another partner's 404."""

    def preflight(self, plans: dict) -> None:
        """The partner's job answers 200, another partner's 404; then every key once, to warm the caches."""
        def get(path, key):
            return requests.get(self.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10)

        own = get(f"/v1/jobs/{plans['own_job']}", plans["keys"][0])
        assert own.status_code == 200, (own.status_code, own.text)
        assert get(f"/v1/jobs/{plans['other_job']}", plans["keys"][0]).status_code == 404
        assert get(f"/v1/jobs/{plans['other_job']}", plans["other_key"]).status_code == 200
        for key in plans["keys"]:
            assert get(f"/v1/jobs/{plans['own_job']}", key).status_code == 200
