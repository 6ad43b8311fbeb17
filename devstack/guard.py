"""One stack per checkout: `make run` holds `.local/run.lock` for the life of the stack.

`run_guarded()` takes the lock (flock, non-blocking), writes who holds it, and execs the command with
the lock's fd inherited, so the command (honcho) holds the lock until it exits, however it exits.
`check()` only asks whether a stack holds it (the early refusal of `make run`, `make delete-local-data`).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

LOCK_NAME = "run.lock"


class StackRunning(Exception):
    """This checkout's stack already runs: the message says where."""


def _lock(path: Path) -> int:
    """An fd holding the exclusive lock on `path`; StackRunning when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StackRunning(_describe(path)) from None
    return fd


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = {}  # held but not yet written: the holder is between flock and write
    pid, port = info.get("pid", "unknown"), info.get("port")
    api = f"API http://127.0.0.1:{port}" if port else "API port unknown"
    since = f", since {info['started']}" if info.get("started") else ""
    return (f"a stack from this checkout is already running ({api}, pid {pid}{since}; lock {path}). "
            f"Use that one, or stop it first (Ctrl-C in its terminal, or `kill {pid}`).")


def check(local_dir: Path) -> None:
    """Raise StackRunning when a stack holds the lock; otherwise return, holding and creating nothing."""
    if (local_dir / LOCK_NAME).exists():
        os.close(_lock(local_dir / LOCK_NAME))


def run_guarded(local_dir: Path, port: int, command: list[str]) -> None:
    """Take the lock and exec `command` holding it; raise StackRunning when it is held."""
    path = local_dir / LOCK_NAME
    fd = _lock(path)
    info = {"pid": os.getpid(), "port": port, "checkout": str(local_dir.parent),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    os.set_inheritable(fd, True)  # exec keeps it open: the lock lives as long as the command
    os.execvp(command[0], command)
