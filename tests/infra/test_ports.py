"""Free ports for private stacks: distinct, inside the span asked for, never one in use."""

from __future__ import annotations

import socket

import pytest

from warmstart.infra import ports


def _bound_with_a_free_neighbour(tries: int = 20) -> tuple[socket.socket, int]:
    """A listening socket on a port whose next port is free (another process may hold the
    neighbour of any one ephemeral port, so a few are tried)."""
    for _ in range(tries):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        if ports.port_free(port + 1):
            return s, port
        s.close()
    pytest.skip(f"no bound port with a free neighbour in {tries} tries")


def test_a_bound_port_is_not_free_and_is_never_handed_out():
    s, taken = _bound_with_a_free_neighbour()
    with s:
        assert not ports.port_free(taken)
        span = range(taken, taken + 2)  # the taken port and a free one: 20 draws, never taken
        assert [ports.free_ports(1, span=span) for _ in range(20)] == [[taken + 1]] * 20


def test_grpc_ports_leave_room_for_seaweedfs_grpc():
    got = ports.free_ports(4, grpc=True)
    assert len(set(got)) == 4 and all(p in ports.SPAN for p in got)
    assert all(ports.port_free(p + ports.GRPC_OFFSET) for p in got)
