"""How many connections a listening proxy holds: in total and per peer address.

Every open connection costs memory and a share of the loop, whatever it sends; a peer
that opens hundreds (slow clients, a misbehaving neighbour) must not crowd out the
others.  No I/O: the server asks before it reads a connection.
"""
from __future__ import annotations

from typing import Optional

MAX_CONNECTIONS = 4096          # per listening proxy and worker process
MAX_CONNECTIONS_PER_PEER = 512  # from one IP address


class Admission:
    def __init__(self, max_total: int = MAX_CONNECTIONS,
                 max_per_peer: int = MAX_CONNECTIONS_PER_PEER) -> None:
        self.max_total, self.max_per_peer = max_total, max_per_peer
        self.total = 0
        self.by_peer: dict[str, int] = {}

    def admit(self, peer: str) -> Optional[str]:
        """None if a connection from ``peer`` may stay (it is counted), else why not."""
        if self.total >= self.max_total:
            return (f"this server holds {self.max_total} connections already "
                    "(max_connections): try again later")
        held = self.by_peer.get(peer, 0)
        if held >= self.max_per_peer:
            return (f"{peer} holds {self.max_per_peer} connections already "
                    "(max_connections_per_peer): reuse them or close some")
        self.total += 1
        self.by_peer[peer] = held + 1
        return None

    def leave(self, peer: str) -> None:
        """An admitted connection from ``peer`` closed."""
        self.total -= 1
        held = self.by_peer.get(peer, 0) - 1
        if held > 0:
            self.by_peer[peer] = held
        else:
            self.by_peer.pop(peer, None)
