"""Free TCP ports for local services.

Ports come from 10000-32767: the kernel hands out ephemeral (client-side) ports from 32768 up, so a
port picked there can be taken by any outgoing connection between our check and the server's bind.
"""
from __future__ import annotations

import random
import socket

LOW, HIGH = 10000, 32768  # HIGH is exclusive: the start of Linux's default ephemeral range


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port and we could bind it now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR, as servers set it: a port whose old connections linger in TIME_WAIT is free,
        # one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(offset: int | None = None, *, exclude: set[int] | frozenset[int] = frozenset(),
              preferred: int | None = None) -> int:
    """A free port in [10000, 32768); with `offset`, port + offset is free and below 32768 too.

    `preferred` is returned when usable, so a service keeps its port across restarts when it can.
    (`weed mini` needs the offset: its gRPC ports are its HTTP ports + 10000.)
    """
    def usable(port: int) -> bool:
        ports = [port] if offset is None else [port, port + offset]
        return all(LOW <= p < HIGH and p not in exclude and port_is_free(p) for p in ports)

    if preferred is not None and usable(preferred):
        return preferred
    top = HIGH - (offset or 0)
    for _ in range(200):
        port = random.randrange(LOW, top)
        if usable(port):
            return port
    raise RuntimeError(f"no free port found in [{LOW}, {top})")
