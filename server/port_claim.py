"""One tunduk instance per listening address.

Worker processes share their ports with SO_REUSEPORT, which the kernel allows any
process of the same user: a second ``tunduk run`` on the same ports would bind too
and take half the connections, with another configuration and another message log.
So before it starts workers, ``tunduk run`` takes an exclusive lock per address (kept
until it exits; its workers inherit it) and checks that nothing else listens there.
"""
from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path


class PortTaken(Exception):
    """The message names the configuration key, the address and what to do."""


def claim(listen: dict[str, tuple[str, int]]) -> list[int]:
    """Lock every ``key: (host, port)`` of ``listen`` (port 0: skipped); the open lock
    files' descriptors, which must stay open while the server runs."""
    held = []
    try:
        for key, (host, port) in listen.items():
            if port:
                held.append(_lock(key, host, port))
                _check_free(key, host, port)
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    return held


def _lock(key: str, host: str, port: int) -> int:
    path = Path(tempfile.gettempdir()) / f"tunduk-{host.strip('[]')}-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PortTaken(f"{key}: {host}:{port} is served by another tunduk instance "
                        f"(it holds {path}): stop it, or give this server another "
                        f"port in [listen] {key.split('.')[-1]}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _check_free(key: str, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"{key}: cannot listen on {host}:{port} ({exc.strerror}): "
                            "stop what listens there, or give this server another port "
                            f"in [listen] {key.split('.')[-1]}") from None
