"""Recently verified API keys, so most requests authenticate without a database round trip.

Authentication was the largest share of a poll's CPU (a SELECT of the key and an UPDATE of
`last_used_at`, each with a pool pre-ping); `bench/poll_cpu.py` measures the difference. Now a key verified in the last KEY_CACHE_SECONDS
(10 s) is trusted from memory (per process; only its SHA-256 is kept), and `last_used_at` is written
at most once a minute per key and process. The price: a revoked key keeps working in a process that
verified it for at most KEY_CACHE_SECONDS; KEY_CACHE_SECONDS=0 turns the cache off.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cachetools import TTLCache

LAST_USED_EVERY_SECONDS = 60.0  # last_used_at is written at most this often per key and process


@dataclass
class Entry:
    principal: object  # api.auth.Principal
    last_used_written: float  # monotonic time we last wrote (or read a fresh) last_used_at


class KeyCache:
    def __init__(self, ttl_seconds: float, timer=time.monotonic, maxsize: int = 10_000):
        self.timer = timer
        self._entries = TTLCache(maxsize=maxsize, ttl=ttl_seconds, timer=timer) if ttl_seconds > 0 else None
        self._lock = threading.Lock()  # gunicorn gthread workers share one cache across threads

    def get(self, key_hash: str) -> Entry | None:
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(key_hash)

    def put(self, key_hash: str, principal, last_used_age: float | None) -> None:
        """`last_used_age`: seconds since the key's last_used_at as the database had it (None: never)."""
        if self._entries is None:
            return
        written = self.timer() - (last_used_age if last_used_age is not None else LAST_USED_EVERY_SECONDS)
        with self._lock:
            self._entries[key_hash] = Entry(principal, written)

    def last_used_due(self, entry: Entry) -> bool:
        """Whether this request should write last_used_at (and, if so, note that it did)."""
        now = self.timer()
        with self._lock:
            if now - entry.last_used_written < LAST_USED_EVERY_SECONDS:
                return False
            entry.last_used_written = now
            return True
