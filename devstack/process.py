"""A started service process (`Running`) and how we start, wait for and stop one."""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """preexec_fn asking Linux to send `sig` to the child when we die, even by SIGKILL: a killed
    pytest or `make` must not leave a database running."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return preexec


def spawn(cmd: list[str], *, log_path: Path | None, env: dict[str, str] | None = None,
          cwd: Path | None = None, pdeathsig: int | None = signal.SIGTERM) -> subprocess.Popen:
    """Start `cmd` in its own session, output to `log_path` (or ours when None).

    Its own session: Ctrl-C in a terminal and honcho's process-group signals reach only us, and we
    stop the service exactly once, with the signal it wants (a second SIGTERM can mean "die now").
    """
    out = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=_die_with_parent(pdeathsig) if pdeathsig else None)
    finally:
        if out is not None:
            out.close()  # the child holds its own copy


@dataclass
class Running:
    """A service we started: where to reach it, and how to stop it."""

    name: str
    proc: subprocess.Popen
    endpoint: str  # host:port
    url: str  # what goes into the settings (DATABASE_URL, REDIS_URL, or http://host:port for S3)
    log_path: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    cleanup: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float | None = None) -> int | None:
        """Ask the service to stop, wait for it (SIGKILL after `timeout`, default `stop_timeout`),
        then clean up. Returns its exit status."""
        if self.alive():
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None
        return self.proc.returncode

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> Running:
        """Poll `ready()` until true; raise (after stopping the process) if it exits or times out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive():
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before {what}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name}: no {what} after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
