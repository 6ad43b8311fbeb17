"""Polling a job until a condition holds, for tests that watch a real worker."""
from __future__ import annotations

import time
from collections.abc import Callable


def poll(fetch: Callable[[], dict], until: Callable[[dict], bool], timeout: float = 120,
         interval: float = 0.05) -> tuple[dict, list[dict]]:
    """Call `fetch()` until `until(result)`; returns the last result and every one seen."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        seen.append(fetch())
        if until(seen[-1]):
            return seen[-1], seen
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last seen: {seen[-1] if seen else None}")
