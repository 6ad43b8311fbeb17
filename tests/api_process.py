"""The API alone, as the Procfile's `api:` line starts it (gunicorn) under honcho, with an env file as
`make run` writes .local/env: for tests that need the real gunicorn and its workers without the
rest of the stack (tests/system runs all four processes), and for bench/poll_load.py, which runs
several checkouts side by side and reads their CPU time from /proc."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from shared.settings import Settings
from shared.storage import Storage

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU the process has used so far (OSError once it has exited); with `reaped`, also
    that of its children that exited and that it waited for (/proc's cutime and cstime)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / CLOCK_TICKS


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from /proc (parents first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class ApiProcess:
    """`with ApiProcess(ROOT, folder, settings).run() as api:` gunicorn answers at `api.url` (ready)."""

    def __init__(self, checkout: Path, folder: Path, settings: Settings, api_command: str | None = None):
        from devstack.ports import free_port

        self.checkout, self.folder, self.settings = checkout, folder, settings
        procfile = dict(line.split(":", 1) for line in (checkout / "Procfile").read_text().splitlines()
                        if ":" in line)
        self.command = (api_command or procfile["api"]).strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @contextlib.contextmanager
    def run(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        Storage(self.settings).ensure_bucket()
        (self.folder / "Procfile").write_text(f"api: {self.command}\n")
        env = {k.upper(): str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in self.settings.model_dump().items() if v is not None}
        (self.folder / "env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
        bin_dir = str(Path(sys.executable).parent)
        environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
                   "PYTHONPATH": str(self.checkout)}  # a baseline checkout imports its own code
        log = open(self.folder / "honcho.log", "ab")
        self.proc = subprocess.Popen([str(Path(bin_dir) / "honcho"), "-f", str(self.folder / "Procfile"),
                                      "-e", str(self.folder / "env"), "start", "-p", str(self.port)],
                                     cwd=self.checkout, env=environ, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready()
            yield self
        finally:
            with contextlib.suppress(ProcessLookupError):  # honcho may have stopped already (a failed start)
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            log.close()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        log = (self.folder / "honcho.log").read_text()
        raise RuntimeError(f"the API did not become ready:\n{log[-3000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU of gunicorn's master and workers (every process below honcho but honcho)."""
        total = 0.0
        for pid in descendants(self.proc.pid)[1:]:
            try:
                total += process_cpu_seconds(pid)
            except OSError:
                continue  # exited between the listing and the read
        return total

    def gunicorn_pid(self) -> int:
        """gunicorn's master: the first process below honcho whose command line names gunicorn."""
        for pid in descendants(self.proc.pid)[1:]:
            try:
                if b"gunicorn" in open(f"/proc/{pid}/cmdline", "rb").read():
                    return pid
            except OSError:
                continue
        raise RuntimeError("no gunicorn process below honcho")
