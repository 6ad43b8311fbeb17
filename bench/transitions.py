"""What the worker's database work costs per job: the claimable read, the claim and the success, each
in its own session as `worker/pipeline.py` runs them (one statement each, in autocommit: the worker's
`statements` sessions; a success with a callback takes a transaction instead, not timed here),
against a real Postgres (a fresh database, dropped after).

    python bench/transitions.py                        # 300 jobs after 30 warm-up, 3 rounds
    python bench/transitions.py --jobs 500 --rounds 5

Prints, per round, this process's CPU ms per job (the Python side: SQLAlchemy, psycopg) and the median
wall ms per job (round trips included). Creating each job is not timed. Postgres: DATABASE_URL's
server, default the machine's 127.0.0.1:5432.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import lifecycle  # noqa: E402
from shared.accounts import create_partner  # noqa: E402
from shared.db import make_engine, make_session_factory, make_statement_factory  # noqa: E402
from shared.models import Job  # noqa: E402
from tests.database import drop_database, fresh_database  # noqa: E402


def one_job(sessions, statements, partner_id) -> tuple[float, float]:
    """(CPU s, wall s) of the read, claim and success of a new job (created in a transaction first)."""
    with sessions() as session, session.begin():
        job = Job(partner_id=partner_id, input_key="bench/original", input_content_type="image/jpeg",
                  input_width=128, input_height=128)
        lifecycle.create(session, job)
    cpu, wall = time.process_time(), time.perf_counter()
    with statements() as session:
        assert lifecycle.claimable_input(session, job.id) == "bench/original"
    with statements() as session, session.begin():
        claimed = lifecycle.claim(session, job.id, "bench", 60)
    with statements() as session, session.begin():
        assert lifecycle.succeed(session, claimed, result_key="bench/result.png", output_width=512,
                                 output_height=512, model_name="bench", model_version="0", progress_done=1,
                                 progress_total=1)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"portraits_transitions_bench_{os.getpid()}"
    engine = make_engine(fresh_database(base, name))
    try:
        sessions, statements = make_session_factory(engine), make_statement_factory(engine)
        with sessions() as session, session.begin():
            partner_id = create_partner(session, "Bench Memorials").id
        for _ in range(30):
            one_job(sessions, statements, partner_id)
        print("| round | Python CPU ms per job | wall ms per job (median) |\n|---|---:|---:|")
        for r in range(args.rounds):
            runs = [one_job(sessions, statements, partner_id) for _ in range(args.jobs)]
            print(f"| {r + 1} | {sum(c for c, _ in runs) / len(runs) * 1000:.2f} | "
                  f"{statistics.median(w for _, w in runs) * 1000:.2f} |", flush=True)
    finally:
        engine.dispose()
        drop_database(base, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
