"""bench/loadgen.py, the open-loop generator behind bench/poll_load.py, against a server whose answers
take a time the test sets: every request is answered and counted, and the time a request waited
behind a slow server counts in its latency (a closed-loop client would report the service time)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from bench.loadgen import tail_windows
from tests.conftest import ROOT

SERVICE_SECONDS = 0.1


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's gthread workers

    def do_GET(self):
        time.sleep(SERVICE_SECONDS)
        status = 200 if self.headers["Authorization"] == "Bearer good" else 401
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_open_loop_latency_counts_the_wait_behind_a_slow_server(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), Slow)  # one request at a time
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plan = tmp_path / "plan.json"
    requests = [["/a", "good"], ["/b", "good"], ["/c", "bad"]]
    plan.write_text(json.dumps({"method": "GET", "requests": requests}))
    command = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(server.server_address[1]),
               "--plan", str(plan), "--rate", "30", "--seconds", "1", "--warmup", "0", "--connections", "1"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        server.shutdown()
        server.server_close()
    result = json.loads(out.stdout)
    assert result["statuses"] == {"200": 20, "401": 10} and result["errors"] == {}
    # 30 requests due within 1 s, served one by one in >= 0.1 s each: the last waits >= 2 s in all.
    assert max(result["latencies_ms"]) >= (30 * SERVICE_SECONDS - 1) * 1000
    assert min(result["latencies_ms"]) >= SERVICE_SECONDS * 1000
    # When each was due, beside its latency: request i at i / 30 s after the warm-up.
    assert sorted(round(due * 30) for due in result["due_s"]) == list(range(30))


def test_tail_windows_tells_a_short_stall_from_waits_spread_over_the_run():
    due = [i / 100 for i in range(1000)]  # 10 s at 100/s: 100 windows of 100 ms
    stall = [50.0 if 4.0 <= d < 4.2 else 2.0 for d in due]  # every request slow for 0.2 s
    assert tail_windows(due, stall) == 2
    spread = [50.0 if i % 50 == 7 else 2.0 for i in range(1000)]  # two slow requests each second
    assert tail_windows(due, spread) == 20
    assert tail_windows([], []) == 0
