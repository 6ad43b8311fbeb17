"""bench/profile_summary.py: py-spy's collapsed stacks counted by part of the service."""
from __future__ import annotations

from bench.profile_summary import OTHER, summarize, table

CELERY_LOOP = ("create_loop (kombu/asynchronous/hub.py:465);_deliver (kombu/transport/virtual/base.py:1027);"
               "trace_task (celery/app/trace.py:453)")


def stack(*frames: str) -> str:
    return ";".join((CELERY_LOOP,) + frames)


def test_each_sample_counts_once_under_its_innermost_known_part():
    lines = [
        stack("start (worker/pipeline.py:111)", "claim (shared/lifecycle.py:140)",
              "execute (sqlalchemy/engine/base.py:1450)", "wait (psycopg/connection.py:495)") + " 7\n",
        stack("store (worker/pipeline.py:158)", "put (shared/storage.py:69)",
              "urlopen (urllib3/connectionpool.py:598)") + " 5\n",
        stack("store (worker/pipeline.py:158)", "encode_png (model/png.py:40)") + " 2\n",
        stack("submit (worker/overlap.py:60)") + " 3\n",  # only the loop around it is known
        "\n",
        "_bootstrap (threading.py:995);<module> (somewhere_else.py:1) 1\n",  # the thread's own frame
        "<module> (nowhere.py:1) 4\n",
    ]
    counts = summarize(lines)
    assert counts == {"database": 7, "S3 SDK": 5, "PNG encode": 2, "Celery task": 3, "thread hand-offs": 1, OTHER: 4}


def test_the_table_gives_shares_and_milliseconds_per_job():
    text = table(summarize([stack("claim (shared/lifecycle.py:140)") + " 300\n", "x (y.py:1) 100\n"]),
                 jobs=100, rate=1000)
    assert "| database | 300 | 75.0% | 3.00 |" in text
    assert "| other | 100 | 25.0% | 1.00 |" in text
    assert "| **total** | 400 | 100% | 4.00 |" in text
