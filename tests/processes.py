"""Real worker processes for end-to-end and chaos tests (never Celery eager mode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a worker needs to reach the same services as the tests."""
    env = dict(os.environ)
    env.update({name.upper(): str(value) for name, value in settings.model_dump().items()
                if value is not None})
    env["PYTHONPATH"] = str(ROOT)
    return env


class WorkerProcess:
    """`celery -A worker.app worker --pool solo` in a subprocess, logging to a file."""

    celery_app = "worker.app"  # subclasses name a test app with a sabotaged decoder or model

    def __init__(self, settings: Settings, log_path: Path, name: str = "test", env: dict | None = None):
        self.settings, self.log_path, self.name, self.env = settings, log_path, name, env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ready_before = self.log().count(" ready.")  # restarts append to the same log
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(" ready.") > ready_before:
                return self  # it may already have died on its first task: the caller's watchdog copes
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def _spawn(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.celery_app, "worker", "--pool", "solo",
             "--loglevel", "INFO", "--hostname", f"{self.name}@%h", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=service_env(self.settings) | self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class PacedWorkerProcess(WorkerProcess):
    """The real worker with a model whose speed the test sets: TEST_TILE_DELAY_SECONDS per tile
    (tests/paced_worker.py)."""

    celery_app = "tests.paced_worker"

    def __init__(self, settings: Settings, log_path: Path, tile_delay: float, name: str = "paced"):
        super().__init__(settings, log_path, name, env={"TEST_TILE_DELAY_SECONDS": str(tile_delay)})
