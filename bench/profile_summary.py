"""Where a profiled worker's samples went, by part of the service.

    python -m bench drain --rounds 1 --jobs 400 --profile /tmp/drain --gil
    python -m bench profile_summary /tmp/drain.1.raw --jobs 400

Reads py-spy's raw output (collapsed stacks: `frame;frame;... count`, what `--profile` of `drain` and
`job_overhead` writes) and counts each sample once, under the innermost frame that belongs to a known
part (a statement run from the success transition is "database", the S3 put before it "S3 SDK"), so
the rows add up to the total. With `--gil`, py-spy sampled only the thread holding the GIL: the
table is then the worker's Python time, the one interpreter its threads share. py-spy samples at
`--rate` per second (bench/service.py uses 1000), so a sample is a millisecond there.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (part, substrings of a py-spy frame "function (path/file.py:line)"); the first part that matches the
# innermost matching frame wins.
PARTS = (
    ("database", ("sqlalchemy/", "psycopg/", "shared/lifecycle.py", "shared/transition_log.py",
                  "shared/db.py")),
    ("S3 SDK", ("minio/", "urllib3/", "shared/storage.py")),
    ("decode (decoder process)", ("worker/decode_guard.py", "worker/decode_child.py", "multiprocessing/")),
    ("PNG encode", ("model/png.py", "isal")),
    ("model", ("openvino/", "model/upscaler.py", "model/rgb8.py", "model/crop.py", "model/tiling.py")),
    ("heartbeat", ("worker/heartbeat.py",)),
    ("logging", ("logging/", "shared/logs.py", "pythonjsonlogger/")),
    ("metrics", ("prometheus_client/", "shared/metrics.py")),
    ("Celery task", ("celery/",)),
    ("Celery broker (kombu, redis-py)", ("kombu/", "redis/")),
    ("thread hand-offs", ("threading.py", "queue.py")),
)
OTHER = "other"


def part_of(frames: list[str]) -> str:
    """The part of the innermost frame that belongs to one (frames outermost first, as py-spy writes)."""
    for frame in reversed(frames):
        for part, marks in PARTS:
            if any(mark in frame for mark in marks):
                return part
    return OTHER


def summarize(lines) -> Counter:
    """Samples per part from py-spy raw lines."""
    counts: Counter = Counter()
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        counts[part_of(stack.split(";"))] += int(count)
    return counts


def table(counts: Counter, jobs: int | None, rate: float) -> str:
    total = sum(counts.values())
    per_job = f" | ms per job ({jobs} jobs)" if jobs else ""
    rows = [f"| part | samples | share{per_job} |", "|---|---:|---:|" + ("---:|" if jobs else "")]
    for part, n in counts.most_common():
        cell = f" | {n / rate * 1000 / jobs:.2f}" if jobs else ""
        rows.append(f"| {part} | {n} | {n / total:.1%}{cell} |")
    cell = f" | {total / rate * 1000 / jobs:.2f}" if jobs else ""
    rows.append(f"| **total** | {total} | 100%{cell} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path, help="py-spy raw output (e.g. /tmp/drain.1.raw)")
    parser.add_argument("--jobs", type=int, help="jobs the profile covered: adds ms per job")
    parser.add_argument("--rate", type=float, default=1000, help="py-spy's samples per second (default 1000)")
    args = parser.parse_args(argv)
    with args.raw.open() as lines:
        print(table(summarize(lines), args.jobs, args.rate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
