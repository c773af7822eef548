"""Free local ports for a private stack (the tests' and benchmarks' own services).

A port counts as free when a socket can bind it on 127.0.0.1 now; another process may still take
it before the service starts, which is why callers pick from a random spread of ports.
"""

from __future__ import annotations

import random
import socket

SPAN = range(20000, 30000)  # well above the stack's defaults and below the ephemeral range
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on each HTTP port + 10000


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, span: range = SPAN, grpc: bool = False) -> list[int]:
    """``n`` distinct free ports drawn at random from ``span`` (with ``grpc``: whose port +
    10000, SeaweedFS's gRPC port, is free too)."""
    rng, out = random.SystemRandom(), []
    while len(out) < n:
        p = rng.randrange(span.start, span.stop)
        if p in out or not port_free(p) or (grpc and not port_free(p + GRPC_OFFSET)):
            continue
        out.append(p)
    return out
