"""CPU time of one `GET /v1/jobs/<id>` in the API process, with the key cache off and on, interleaved.

    python -m devstack exec --services postgres,redis -- python bench/poll_cpu.py

In-process (Flask's test client, no HTTP server), real Postgres and Redis; S3 is not touched. Prints
the median CPU ms per request over several rounds for KEY_CACHE_SECONDS=0 (every request verifies
the key in Postgres and may write last_used_at) and 10 (the default), and their ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import create_app  # noqa: E402
from shared import lifecycle  # noqa: E402
from shared.accounts import PARTNER, create_key, create_partner  # noqa: E402
from shared.models import Job, JobStatus  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.database import drop_database, fresh_database  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="per round and setting")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    url = fresh_database(base, "portraits_poll_bench")
    try:
        common = dict(database_url=url, redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                      rate_limit_default="1000000/minute")
        apps = {ttl: create_app(Settings(key_cache_seconds=ttl, **common)) for ttl in (0, 10)}
        with apps[0].extensions["portraits"].sessions() as s, s.begin():
            partner = create_partner(s, "bench")
            _, key = create_key(s, role=PARTNER, name="bench", partner=partner)
            job = Job(id=uuid.uuid4(), status=JobStatus.QUEUED, partner_id=partner.id, input_key="k",
                      input_content_type="image/png", input_width=4, input_height=4, attempts=0,
                      attempts_allowed=3, cancel_requested=False)
            lifecycle.create(s, job)
        clients = {}
        for ttl, app in apps.items():
            clients[ttl] = app.test_client()
            clients[ttl].environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            for _ in range(50):  # warm-up: pools, caches
                assert clients[ttl].get(f"/v1/jobs/{job.id}").status_code == 200
        cpu_ms = {ttl: [] for ttl in apps}
        for _ in range(args.rounds):
            for ttl, client in clients.items():
                start = time.process_time()
                for _ in range(args.requests):
                    client.get(f"/v1/jobs/{job.id}")
                cpu_ms[ttl].append((time.process_time() - start) / args.requests * 1000)
        for app in apps.values():
            app.extensions["portraits"].close()
    finally:
        drop_database(base, "portraits_poll_bench")
    off, on = statistics.median(cpu_ms[0]), statistics.median(cpu_ms[10])
    print(f"CPU ms per GET /v1/jobs/<id>, median of {args.rounds} rounds x {args.requests} (os.cpu_count()="
          f"{os.cpu_count()}, load {os.getloadavg()[0]:.2f})")
    print("| KEY_CACHE_SECONDS | CPU ms / request |\n|---|---:|")
    print(f"| 0 (verify every request) | {off:.2f} |\n| 10 (default) | {on:.2f} |")
    print(f"cache on / off: {on / off:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
