"""The whole service as `make run` starts it: honcho runs the repository's Procfile (gunicorn API,
Celery worker, sweeper, webhook deliverer) with an env file, and the test talks to it over HTTP only.

One change to the Procfile, made visibly here: the worker line's Celery app `worker.app` becomes
`tests.paced_worker`, the same worker whose model pauses TEST_TILE_DELAY_SECONDS per tile, so a test
decides how long a job runs instead of this CPU.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.polling import poll
from tests.processes import ROOT

WORKER_APP = "celery -A worker.app "
PACED_APP = "celery -A tests.paced_worker "


def paced_procfile() -> str:
    text = (ROOT / "Procfile").read_text()
    assert text.count(WORKER_APP) == 1, f"the Procfile's worker line changed: {text}"
    return text.replace(WORKER_APP, PACED_APP)


class Stack:
    """`procfile`: the Procfile's text; default the paced one above (bench/service.py runs the real one)."""

    def __init__(self, folder: Path, env: dict[str, str], port: int, procfile: str | None = None):
        self.folder, self.env, self.port, self.procfile = folder, env, port, procfile
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = folder / "honcho.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Stack":
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "Procfile").write_text(self.procfile or paced_procfile())
        # KEY=VALUE lines, as devstack writes .local/env for `make run`.
        (self.folder / "env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items()))
        bin_dir = str(Path(sys.executable).parent)  # gunicorn, celery and python of this venv, as make run
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(bin_dir) / "honcho"), "-f", str(self.folder / "Procfile"), "-e", str(self.folder / "env"),
                 "start", "-p", str(self.port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"honcho exited with {self.proc.returncode}:\n{self.log()}")
            if " ready." in self.log() and self._ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"the stack was not ready after {timeout}s:\n{self.log()}")

    def metrics_url(self, process: str) -> str:
        """The /metrics of a Procfile process (api, worker, sweeper, webhooks): honcho gives the Procfile's
        line i the port $PORT + 100·i, and each process serves its metrics there (METRICS_PORT=$PORT)."""
        names = re.findall(r"^(\w+):", self.procfile or paced_procfile(), re.MULTILINE)
        return f"http://127.0.0.1:{self.port + 100 * names.index(process)}/metrics"

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def process_log(self, name: str) -> str:
        """The lines honcho prefixed with `name` (api, worker, sweeper, webhooks)."""
        return "\n".join(line for line in self.log().splitlines() if re.match(rf"^\S+ {name}\.\d+\s+\|", line))

    def stop(self, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # what Ctrl-C in `make run` does
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Client:
    """requests with a partner's (or an admin's) key, against the stack's URL."""

    def __init__(self, url: str, key: str):
        self.url, self.http = url, requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url + path, timeout=30, **kw)

    def submit(self, image: bytes, **kw) -> requests.Response:
        return self.post("/v1/jobs", files={"image": ("portrait.png", image, "image/png")}, **kw)

    def wait(self, job_id: str, until=lambda j: j["status"] not in ("queued", "running"),
             timeout: float = 120) -> tuple[dict, list[dict]]:
        """Poll the job until `until(job)`; returns it and every state seen."""
        return poll(lambda: self.get(f"/v1/jobs/{job_id}").json(), until, timeout)
