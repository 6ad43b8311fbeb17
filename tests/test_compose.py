"""docker-compose.yml, Dockerfile and Procfile: structure and settings names, checked without Docker."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("api", "worker", "sweeper", "webhooks")
LONG_RUNNING = ("api", "worker", "sweeper", "webhooks", "postgres", "redis", "minio", "prometheus", "flower")
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


# Beyond one machine (README): more GPUs on this host, and worker-only hosts.
EXTRA_GPU_WORKERS = ("worker-gpu1",)
REMOTE_WORKERS = ("worker-remote", "worker-remote-cpu")
WORKER_HOST_ENV = ROOT / "deploy" / "compose" / "worker-host.env.example"
LOCATION = {"DATABASE_URL", "REDIS_URL", "S3_ENDPOINT", "S3_SECURE", "MODEL_DEVICE", "TORCH_THREADS"}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as compose reads an .env file (comments and blank lines skipped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate_with(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR} with the variables in `env` set."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)
    return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)


def gpu_requests(service: dict) -> list[dict]:
    return ((service.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices", [])


def required_variables(text: str) -> set[str]:
    """The ${VAR:?…} / ${VAR?…} names: compose refuses to start anything while one is unset."""
    return set(re.findall(r"(?<!\$)\$\{(\w+):?\?", text))


@pytest.mark.parametrize("name", EXTRA_GPU_WORKERS)
def test_extra_gpu_workers_are_the_worker_pinned_to_another_gpu(services, name):
    worker, extra = services["worker"], services[name]
    assert extra["profiles"] == ["multi-gpu"]  # `docker compose up -d` alone starts one worker
    for key in ("image", "command", "environment", "depends_on", "healthcheck", "restart", "stop_grace_period"):
        assert extra[key] == worker[key], key
    [gpu] = gpu_requests(extra)
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "count" not in gpu and gpu["device_ids"] == [name.removeprefix("worker-gpu")]
    # `worker` reserves `count: 1`, which Docker gives as GPU 0: the device ids never overlap it.
    assert [d.get("count") for d in gpu_requests(worker)] == [1]


@pytest.mark.parametrize("name", REMOTE_WORKERS)
def test_worker_only_hosts_run_the_worker_and_nothing_else(services, name):
    worker, remote = services["worker"], services[name]
    assert remote["profiles"] == ["workers-only"]
    assert not remote.get("depends_on"), "a worker-only host must not start Postgres, Redis or MinIO"
    for key in ("image", "command", "healthcheck", "restart"):
        assert remote[key] == worker[key], key
    unknown = set(env_of(remote)) - SETTINGS_NAMES
    assert not unknown, f"{name} passes variables that Settings does not read: {sorted(unknown)}"
    # Everything but where the services are (and the device) is the main host's configuration.
    main, env = env_of(worker), env_of(remote)
    assert set(main) == set(env)
    assert {key for key in main if main[key] != env[key]} <= LOCATION


def test_remote_workers_pin_one_gpu_or_none(services):
    [gpu] = gpu_requests(services["worker-remote"])
    assert gpu["device_ids"] == ["${WORKER_GPU:-0}"] and "count" not in gpu
    assert env_of(services["worker-remote"])["MODEL_DEVICE"] == "cuda"
    cpu = services["worker-remote-cpu"]
    assert not gpu_requests(cpu) and env_of(cpu)["MODEL_DEVICE"] == "cpu"
    assert env_of(cpu)["TORCH_THREADS"].startswith("${TORCH_THREADS:-")


@pytest.mark.parametrize("name", REMOTE_WORKERS)
def test_remote_workers_reach_what_the_host_env_names(services, name):
    host_env = read_env_file(WORKER_HOST_ENV)
    env = {key: interpolate_with(value, host_env) for key, value in env_of(services[name]).items()}
    settings = Settings(**{key.lower(): value for key, value in env.items()})
    assert settings.database_url == host_env["DATABASE_URL"]
    assert settings.redis_url == host_env["REDIS_URL"] and settings.s3_endpoint == host_env["S3_ENDPOINT"]
    # Unset, they name hosts that never resolve (a loud failure), never the compose-internal ones.
    unset = {key: interpolate_with(value, {}) for key, value in env_of(services[name]).items()}
    assert urlsplit(unset["DATABASE_URL"]).hostname.endswith(".invalid")
    assert urlsplit(unset["REDIS_URL"]).hostname.endswith(".invalid")
    assert unset["S3_ENDPOINT"].split(":")[0].endswith(".invalid")


def test_profiles_add_no_required_variable(services):
    # Compose interpolates the whole file before it picks the services to start: a ${VAR:?} in a
    # profiled service would stop `docker compose up` on a host that never runs that profile.
    def needs(profiled: bool) -> set[str]:
        group = {name: s for name, s in services.items() if bool(s.get("profiles")) == profiled}
        return required_variables(yaml.safe_dump(group, width=10**6))

    assert needs(profiled=True) <= needs(profiled=False)


def test_worker_host_env_example_sets_what_compose_needs():
    text = (ROOT / "docker-compose.yml").read_text()
    host_env = read_env_file(WORKER_HOST_ENV)
    missing = required_variables(text) - set(host_env)
    assert not missing, f"compose refuses to run on a worker-only host without {sorted(missing)}"
    assert {"DATABASE_URL", "REDIS_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY",
            "WORKER_GPU", "TORCH_THREADS"} <= set(host_env)


def test_expose_backends_override_only_publishes_postgres_and_redis(services):
    override = yaml.safe_load((ROOT / "deploy" / "compose" / "expose-backends.yml").read_text())
    assert set(override["services"]) == {"postgres", "redis"}
    for name, port in (("postgres", 5432), ("redis", 6379)):
        assert set(override["services"][name]) == {"ports"}
        [mapping] = override["services"][name]["ports"]
        address, host_port, container_port = mapping.rsplit(":", 2)
        assert int(host_port) == int(container_port) == port
        assert required_variables(address) == {"BACKEND_BIND_ADDRESS"}  # never 0.0.0.0 by default
    host_env = read_env_file(WORKER_HOST_ENV)
    assert urlsplit(host_env["DATABASE_URL"]).port == 5432 and urlsplit(host_env["REDIS_URL"]).port == 6379


# Metrics and logs (README "Metrics", "Logs"): Prometheus scrapes every service that serves metrics on
# this host, at its port; Flower reads the app's broker; everything logs JSON lines.
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ELSEWHERE = {"workers-only"}  # profiles whose services run on other hosts, out of this Prometheus's reach


def option(command: list[str], name: str) -> str:
    """The value of `--name=value` or `name value` in a command list."""
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return command[i + 1]
    raise AssertionError(f"{name} not in {command}")


def metrics_endpoints(services: dict) -> dict[str, int]:
    """Compose service → the port its metrics are served on, for those that serve any here."""
    endpoints = {}
    for name, service in services.items():
        if ELSEWHERE & set(service.get("profiles") or ()):
            continue
        command = service.get("command") or []
        if command[:1] == ["gunicorn"]:  # GET /metrics on the API's own port
            endpoints[name] = int(option(command, "-b").rsplit(":", 1)[1])
        elif "METRICS_PORT" in env_of(service) and int(env_of(service)["METRICS_PORT"]):
            assert env_of(service)["METRICS_ADDR"] == "0.0.0.0", f"Prometheus cannot reach {name}'s metrics"
            endpoints[name] = int(env_of(service)["METRICS_PORT"])
        elif "flower" in command:
            endpoints[name] = int(option(command, "--port"))
    return endpoints


def scrape_targets(config: dict) -> set[tuple[str, int, str]]:
    """(host, port, metrics path) of every target, static or found by DNS (a compose service name)."""
    targets = set()
    for job in config["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            hosts_ports = (target.rsplit(":", 1) for target in static["targets"])
            targets |= {(host, int(port), path) for host, port in hosts_ports}
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A" and dns["port"], job  # SRV records: compose has none
            targets |= {(host, int(dns["port"]), path) for host in dns["names"]}
    return targets


def test_prometheus_config_parses_and_scrapes_every_service_that_serves_metrics(services):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert set(config) <= {"global", "scrape_configs", "rule_files", "alerting"}
    assert config["global"]["scrape_timeout"] <= config["global"]["scrape_interval"]
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), "job names must be unique"
    targets = scrape_targets(config)
    endpoints = metrics_endpoints(services)
    assert {"api", "worker", "worker-gpu1", "sweeper", "webhooks", "flower"} <= set(endpoints)
    missing = {(name, port, "/metrics") for name, port in endpoints.items()} - targets
    assert not missing, f"serve metrics but are not scraped: {sorted(missing)}"
    assert {host for host, _, _ in targets} <= set(services), "targets that are not compose services"


def test_prometheus_reads_that_file_keeps_its_data_and_listens_on_this_host_only(compose, services):
    prometheus = services["prometheus"]
    assert option(prometheus["command"], "--config.file") == "/etc/prometheus/prometheus.yml"
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    data = option(prometheus["command"], "--storage.tsdb.path")
    mounts = [volume.split(":") for volume in prometheus["volumes"]]
    assert any(target == data and source in compose["volumes"] for source, target, *_ in mounts)
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])


def test_flower_watches_the_apps_broker_and_the_worker_sends_it_events(services):
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower:")
    assert option(flower["command"], "--broker") == env_of(services["api"])["REDIS_URL"]
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])  # it can stop workers
    assert "-E" in services["worker"]["command"]  # task events: Flower's task list and runtimes


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_log_json_lines(services, name):
    assert env_of(services[name])["LOG_FORMAT"] == "json"


def test_every_api_command_uses_the_gunicorn_config():
    lines = (ROOT / "Procfile").read_text().splitlines()
    procfile = dict(line.split(":", 1) for line in lines if line.strip())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]["command"]
    cmd = re.search(r"^CMD (\[.*?\])\s*$", (ROOT / "Dockerfile").read_text().replace("\\\n", ""), re.M | re.S)
    for command in (procfile["api"].split(), compose, json.loads(cmd.group(1))):
        assert option(command, "-c") == "gunicorn.conf.py", command
    assert (ROOT / "gunicorn.conf.py").is_file()
    # Each other process gets its own metrics port from honcho ($PORT = base + 100 x its line).
    for name in ("worker", "sweeper", "webhooks"):
        assert procfile[name].strip().startswith("METRICS_PORT=${PORT:-0} "), procfile[name]
