"""Decoding in the worker: `decode_isolated` (the decoder process, worker/decode_guard.py) against
`decode_image` in-process, on the same JPEG faces: wall time per decode and the machine's CPU time
per decode (every process: the decoder, the forkserver, this one).

    python bench/decode.py                     # 128² and 512² val faces, 100 decodes each

As in the worker, each isolated decode starts once the background work of the previous one (a
replacement decoder, if any) is done.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,512")
    parser.add_argument("--decodes", type=int, default=100)
    args = parser.parse_args(argv)

    from bench.service import face_images, machine_cpu_seconds
    from bench.speed import cpu_header
    from model.images import decode_image
    from worker import decode_guard
    from worker.decode_guard import decode_isolated

    # (a checkout before the decoder process forked a child per decode, with no background work)
    wait_idle = getattr(decode_guard, "wait_idle", lambda: None)

    print(cpu_header())
    print("\n| input | decode | ms per decode (median) | machine CPU ms per decode |")
    print("|---|---|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        data = face_images(1, size)[0]
        decode_isolated(data, None, 30)
        rows = {"in-process `decode_image`": lambda: decode_image(data),
                "`decode_isolated` (decoder process)": lambda: decode_isolated(data, None, 30)}
        for name, decode in rows.items():
            wait_idle()
            times, cpu = [], machine_cpu_seconds()
            for _ in range(args.decodes):
                started = time.perf_counter()
                decode()
                times.append(time.perf_counter() - started)
                wait_idle()
            cpu = (machine_cpu_seconds() - cpu) / args.decodes
            print(f"| {size}² JPEG | {name} | {statistics.median(times) * 1000:.2f} | {cpu * 1000:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
