"""Settings: defaults, environment parsing, cross-field checks, and that the README documents them."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("MAX_ATTEMPTS", "5")
    monkeypatch.setenv("S3_SECURE", "true")
    settings = Settings()
    assert settings.max_attempts == 5 and settings.s3_secure is True


def test_time_limits_must_nest_under_the_visibility_timeout():
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(task_time_limit=700, broker_visibility_timeout=600)
    with pytest.raises(ValidationError):
        Settings(task_soft_time_limit=400, task_time_limit=360)


def test_bad_values_are_refused():
    with pytest.raises(ValidationError):
        Settings(model_device="tpu")
    with pytest.raises(ValidationError):
        Settings(idempotency_ttl_seconds=3600)  # must keep keys at least 24 h


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(name):
    assert f"`{name.upper()}`" in README, f"README.md does not document {name.upper()}"
