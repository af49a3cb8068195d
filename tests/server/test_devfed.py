"""The development federation's helpers."""
from __future__ import annotations

import socket

from tunduk.server.devfed import free_port


def test_free_port_never_hands_out_a_port_twice():
    # A federation picks four ports before binding any: the same port twice made
    # the second server fail with "Address already in use" (a CI run did).
    ports = [free_port() for _ in range(400)]
    assert len(set(ports)) == len(ports)


def test_free_port_is_bindable_and_below_the_ephemeral_range():
    port = free_port()
    assert 20000 <= port <= 32000
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
