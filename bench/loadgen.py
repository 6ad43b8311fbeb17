"""An open-loop HTTP load generator: requests start on a fixed schedule, whatever the server does.

    python bench/loadgen.py --port 8000 --rate 500 --seconds 20 --warmup 3 --plan plan.json

A closed-loop client (each connection waits for its answer before sending the next) slows down with
the server and so hides its queueing ("coordinated omission"). Here request i is due at
t0 + i / rate; it takes an idle keep-alive connection or opens a new one (up to --connections, then
it waits for one), and its latency is measured from when it was *due* to its last byte, so time spent
waiting for a connection behind a slow server counts. Plain asyncio streams and a minimal HTTP/1.1
client keep the generator's own CPU low; it shares the machine with the server, so it measures its
own CPU time (`getrusage`) and reports it with the results.

`--plan` is a JSON file: {"method": "GET"|"POST", "requests": [[path, key], ...],
"body_file": optional path, "content_type": optional}; request i uses requests[i % len]. Prints one
JSON object: latencies (ms) of the requests due after the warm-up and, in the same order, when each
was due (s after the warm-up), status counts, errors, and CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter

TAIL_WINDOW_S = 0.1  # the schedule cut into stretches this long, to see how the slowest requests cluster


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read its whole answer; (status, server keeps the connection)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, keep = 0, True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise RuntimeError("chunked answers are not supported by this client")
        if length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


class Generator:
    def __init__(self, port: int, plan: dict, connections: int, timeout: float):
        self.port, self.timeout = port, timeout
        body = open(plan["body_file"], "rb").read() if plan.get("body_file") else b""
        extra = (f"Content-Type: {plan['content_type']}\r\nContent-Length: {len(body)}\r\n"
                 if plan.get("body_file") else "")
        self.requests = [(f"{plan['method']} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Authorization: Bearer {key}\r\n{extra}\r\n").encode() + body
                         for path, key in plan["requests"]]
        self.idle: list[Connection] = []  # LIFO: few connections stay hot, the rest idle out
        self.slots = asyncio.Semaphore(connections)
        self.latencies: list[float] = []
        self.dues: list[float] = []  # when each measured request was due (perf_counter), as latencies
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.reconnects = 0

    async def _connect(self) -> Connection:
        return Connection(*await asyncio.open_connection("127.0.0.1", self.port))

    async def one(self, i: int, due: float, measured: bool) -> None:
        request = self.requests[i % len(self.requests)]
        async with self.slots:
            try:
                status = await asyncio.wait_for(self._send(request), self.timeout)
            except Exception as exc:  # timeouts and connection failures are errors, counted by kind
                if measured:
                    self.errors[type(exc).__name__] += 1
                return
        if measured:
            self.latencies.append((time.perf_counter() - due) * 1000)
            self.dues.append(due)
            self.statuses[status] += 1

    async def _send(self, request: bytes) -> int:
        conn = self.idle.pop() if self.idle else None
        if conn is not None:
            try:
                status, keep = await conn.exchange(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()  # the server closed it while idle (keep-alive timeout): send it again
                conn, self.reconnects = None, self.reconnects + 1
            except BaseException:
                conn.close()
                raise
        if conn is None:
            conn = await self._connect()
            try:
                status, keep = await conn.exchange(request)
            except BaseException:
                conn.close()
                raise
        if keep:
            self.idle.append(conn)
        else:
            conn.close()
        return status

    async def run(self, rate: float, seconds: float, warmup: float) -> dict:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() + 0.05
        total = int((warmup + seconds) * rate)
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and t0 + i / rate <= now:  # everything due by now starts now
                due = t0 + i / rate
                task = loop.create_task(self.one(i, due, due >= t0 + warmup))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        sent_by = time.perf_counter() - t0
        if tasks:
            await asyncio.wait(tasks)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        for conn in self.idle:
            conn.close()
        return {"rate": rate, "seconds": seconds, "scheduled": total - int(warmup * rate),
                "latencies_ms": self.latencies, "due_s": [round(d - t0 - warmup, 4) for d in self.dues],
                "statuses": dict(self.statuses), "errors": dict(self.errors),
                "reconnects": self.reconnects, "schedule_seconds": sent_by,
                "wall_seconds": time.perf_counter() - t0,
                "cpu_seconds": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def tail_windows(due_s: list[float], latencies: list[float], q: float = 99,
                 window: float = TAIL_WINDOW_S) -> int:
    """In how many `window`-long stretches of the schedule the requests at or over the q-th percentile
    latency were due: a few means the tail came from short stalls in which every request waited; many,
    from waits spread over the whole run."""
    if not latencies:
        return 0
    cut = percentile(latencies, q)
    return len({int(due / window) for due, latency in zip(due_s, latencies) if latency >= cut})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=3, help="seconds at the rate, not measured")
    parser.add_argument("--connections", type=int, default=256, help="most open at once")
    parser.add_argument("--timeout", type=float, default=10, help="per request, seconds: then an error")
    args = parser.parse_args(argv)
    with open(args.plan) as f:
        plan = json.load(f)

    async def go():
        return await Generator(args.port, plan, args.connections, args.timeout).run(
            args.rate, args.seconds, args.warmup)

    print(json.dumps(asyncio.run(go())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
