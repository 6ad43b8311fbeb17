"""docker-compose.yml, Dockerfile and Procfile: structure and settings names, checked without Docker."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("api", "worker", "sweeper", "webhooks")
LONG_RUNNING = ("api", "worker", "sweeper", "webhooks", "postgres", "redis", "minio")
ONE_SHOT = ("migrate", "minio-init")
SETTINGS_NAMES = {name.upper() for name in Settings.model_fields}
REQUIRED = {"DATABASE_URL", "REDIS_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET",
            "S3_PUBLIC_ENDPOINT"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str | None]:
    """The service's variables; None for a bare name, which compose passes through from the shell."""
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: None if value is None else str(value) for key, value in env.items()}


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error} with nothing set: the default, or a stand-in."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value)
    return re.sub(r"\$\{(\w+)(:?\?[^}]*)?\}", lambda m: f"x-{m.group(1).lower()}", value)


def test_all_services_present(services):
    assert set(LONG_RUNNING + ONE_SHOT) <= set(services)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks_and_restart(services, name):
    check = services[name].get("healthcheck") or {}
    assert check.get("test"), f"{name} has no healthcheck"
    assert not check.get("disable")
    assert services[name].get("restart") in ("always", "unless-stopped")


@pytest.mark.parametrize("name", ONE_SHOT)
def test_one_shot_services_do_not_restart(services, name):
    assert services[name].get("restart") == "no"


def test_worker_reserves_one_nvidia_gpu(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and d.get("count") == 1 and "gpu" in d.get("capabilities", [])
               for d in devices), devices
    assert env_of(services["worker"])["MODEL_DEVICE"] == "cuda"
    command = " ".join(services["worker"]["command"])
    assert "worker.app" in command and "--pool solo" in command and "--concurrency 1" in command


def test_api_runs_the_app_factory(services):
    command = services["api"]["command"]
    assert command[0] == "gunicorn" and "api:create_app()" in command


@pytest.mark.parametrize("name", APP_SERVICES + ("migrate",))
def test_app_env_names_are_settings_fields(services, name):
    unknown = set(env_of(services[name])) - SETTINGS_NAMES
    assert not unknown, f"{name} passes variables that Settings does not read: {sorted(unknown)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_env_sets_the_required_settings_and_validates(services, name):
    env = env_of(services[name])
    assert REQUIRED <= set(env), f"{name} lacks {sorted(REQUIRED - set(env))}"
    settings = Settings(**{key.lower(): interpolate(value) for key, value in env.items()
                           if value is not None})
    assert settings.s3_endpoint == "minio:9000"
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert settings.task_time_limit < settings.broker_visibility_timeout  # no double delivery


def test_app_reaches_the_compose_postgres(services):
    pg = {key: interpolate(value) for key, value in env_of(services["postgres"]).items()}
    for name in APP_SERVICES + ("migrate",):
        url = urlsplit(interpolate(env_of(services[name])["DATABASE_URL"]))
        assert (url.hostname, url.port, url.username) == ("postgres", 5432, pg["POSTGRES_USER"])
        assert url.path == f"/{pg['POSTGRES_DB']}"
        assert url.password == pg["POSTGRES_PASSWORD"]  # the same ${POSTGRES_PASSWORD} reference


def test_app_services_share_one_configuration_and_image(services):
    api = env_of(services["api"])
    for name in ("worker", "sweeper"):
        other = env_of(services[name])
        for key in set(api) & set(other):
            assert api[key] == other[key], (name, key)
    assert "LEASE_SECONDS" in env_of(services["worker"]) and "LEASE_SECONDS" in env_of(services["sweeper"])
    assert len({services[name]["image"] for name in APP_SERVICES + ("migrate",)}) == 1


def test_exactly_one_sweeper(services):
    assert services["sweeper"]["command"] == ["python", "-m", "worker.sweeper"]
    assert services["sweeper"].get("deploy", {}).get("replicas", 1) == 1


def test_dependencies_wait_for_health_and_one_shots(services):
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        for backing in ("postgres", "redis", "minio"):
            assert deps[backing]["condition"] == "service_healthy", (name, backing)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "alembic upgrade head" in " ".join(services["migrate"]["command"])


def test_bucket_is_created_at_start(services):
    init = services["minio-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "mc mb --ignore-existing" in script and "$$S3_BUCKET" in script
    assert env_of(init)["S3_BUCKET"] == env_of(services["api"])["S3_BUCKET"]
    # The app's keys are the user minio-init creates, not MinIO's root account.
    assert env_of(init)["S3_ACCESS_KEY"] == env_of(services["api"])["S3_ACCESS_KEY"]
    assert "MINIO_ROOT_USER" not in env_of(services["api"])


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, mount in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("minio", "/data")):
        volumes = [v.split(":") for v in services[name]["volumes"]]
        assert any(target == mount and source in declared for source, target, *_ in volumes), name


def test_dockerfile_pins_torch_and_drops_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("torch"))
    assert f"TORCH_VERSION={pin.split('==')[1]}" in dockerfile, "Dockerfile torch differs from pyproject"
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")


def test_procfile_runs_the_api_one_solo_worker_the_sweeper_and_the_deliverer():
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(lines) == {"api", "worker", "sweeper", "webhooks"}
    assert "worker.sweeper" in lines["sweeper"] and "worker.webhooks" in lines["webhooks"]
    assert "gunicorn" in lines["api"] and '"api:create_app()"' in lines["api"]
    assert "${PORT:-8000}" in lines["api"] and "127.0.0.1" in lines["api"]
    assert "-A worker.app worker" in lines["worker"] and "--pool solo" in lines["worker"]
