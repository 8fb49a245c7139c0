"""The local stack's ports (`local.processes.free_port`): a port handed to one function's process
must not reach another listener before that process binds it. Once, a port from `bind(0)` went
to another function's ingress first, and the content phase's requests were answered by `icps`."""

from __future__ import annotations

import socket

from local.processes import _ephemeral_low, free_port


def test_a_port_is_handed_out_once_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < _ephemeral_low() for port in ports)


def test_no_bind_to_port_zero_takes_a_port_handed_out_and_not_yet_bound() -> None:
    handed = {free_port() for _ in range(50)}
    listeners = []
    try:
        for _ in range(200):  # what ingresses and loopback servers do
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            listeners.append(sock)
        assert not handed & {sock.getsockname()[1] for sock in listeners}
    finally:
        for sock in listeners:
            sock.close()
