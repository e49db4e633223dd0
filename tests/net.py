"""Network helpers shared by unit and integration tests."""

from __future__ import annotations

import socket

_given: set[int] = set()


def free_port() -> int:
    """A TCP port free on loopback right now (tests bind servers to 127.0.0.1 only), never one
    this process was given before: a port closed at once can come back from the next bind to
    port 0, and two servers of one test (a pool's HTTP front and Ray's proxy) then collide."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
