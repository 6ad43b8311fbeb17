"""Is a service there and usable? Quick yes/no checks that never raise.

Each probe first tries a plain TCP connect, so a closed port answers False in milliseconds instead of
waiting for a client library's own timeout and retries.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pg_params(url: str, dbname: str | None = None) -> dict:
    """libpq connection parameters for a SQLAlchemy URL (`postgresql+psycopg://...`)."""
    u = make_url(url)
    params = {"host": u.host or "127.0.0.1", "port": u.port or 5432, "user": u.username or "postgres",
              "dbname": dbname or u.database or "postgres"}
    if u.password:
        params["password"] = u.password
    return params


def postgres_reachable(url: str, timeout: float = 2.0) -> bool:
    """True when the server in `url` accepts our login (the database itself may not exist yet)."""
    import psycopg

    params = pg_params(url)
    if not tcp_open(params["host"], params["port"], timeout):
        return False
    # The URL's database may be one we are about to create: any database we can log in to will do.
    for dbname in dict.fromkeys([params["dbname"], "postgres", "template1"]):
        try:
            with psycopg.connect(**{**params, "dbname": dbname}, connect_timeout=max(1, int(timeout))):
                return True
        except psycopg.Error:
            continue
    return False


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    """True when the Redis server in `url` answers PING."""
    import redis

    parts = urlsplit(url)
    if not tcp_open(parts.hostname or "127.0.0.1", parts.port or 6379, timeout):
        return False
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def s3_reachable(endpoint: str, access_key: str, secret_key: str, *, secure: bool = False,
                 region: str = "us-east-1", bucket: str | None = None, timeout: float = 2.0) -> bool:
    """True when the S3 API at `endpoint` (host:port) accepts these credentials.

    With `bucket`, asks whether that bucket exists (any answer but an error counts); without, lists
    buckets. A wrong secret is an error: the server checks the request signature.
    """
    import urllib3
    from minio import Minio

    host, _, port = endpoint.rpartition(":")
    if not tcp_open(host, int(port), timeout):
        return False
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                   http_client=http)
    try:
        if bucket:
            client.bucket_exists(bucket)
        else:
            client.list_buckets()
        return True
    except Exception:  # S3Error, urllib3 errors, TLS errors: all mean "not usable as configured"
        return False
    finally:
        http.clear()
