"""A small keep-alive connection pool over http.client, for peers and backends.

Why not urllib3: we must see the peer certificate of each new TLS connection to pin
it against the federation configuration, and keep the per-call path short.
Every socket or HTTP error becomes a ``TransportError`` here, at the I/O call.
"""
from __future__ import annotations

import hashlib
import http.client
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Callable, Optional


class TransportError(Exception):
    """The HTTP exchange failed (connect, TLS, send or receive).

    ``sent`` is False only when the request certainly never left (connect, TLS or
    certificate pin failed): only then may a caller try another server with it.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ResponseTooLarge(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]       # lower-cased names
    body: bytes
    peer_cert_der: Optional[bytes] = None


# Errors that mean a pooled keep-alive connection had been closed by the peer
# before we used it: the request never reached the application, so one retry on a
# fresh connection is safe.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
          http.client.CannotSendRequest)


class Pool:
    """Connections to one (host, port); thread-safe; ``maxsize`` idle ones kept."""

    def __init__(self, host: str, port: int, *, ssl_context: Optional[ssl.SSLContext] = None,
                 timeout: float = 60.0, maxsize: int = 64,
                 verify_peer: Optional[Callable[[bytes], None]] = None,
                 max_response_bytes: int = 50 * 1024 * 1024) -> None:
        self.host, self.port = host, port
        self.max_response_bytes = max_response_bytes
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.verify_peer = verify_peer
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize)

    def _new(self) -> http.client.HTTPConnection:
        if self.ssl_context is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            der = conn.sock.getpeercert(binary_form=True)
            conn.peer_cert_der = der
            if self.verify_peer is not None:
                try:
                    self.verify_peer(der)
                except Exception:
                    conn.close()
                    raise
        else:
            conn.peer_cert_der = None
        return conn

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        return self.request("POST", path, body, headers)

    def get(self, path: str, headers: Optional[dict[str, str]] = None) -> Response:
        """GET ``path`` (e.g. a backend's WSDL) on a pooled connection."""
        return self.request("GET", path, None, headers or {})

    def request(self, method: str, path: str, body: Optional[bytes],
                headers: dict[str, str]) -> Response:
        try:
            conn, reused = self._idle.get_nowait(), True
        except queue.Empty:
            conn, reused = self._connect(), False
        try:
            try:
                return self._roundtrip(conn, method, path, body, headers)
            except _STALE:
                conn.close()
                if not reused:
                    raise
                conn = self._connect()
                return self._roundtrip(conn, method, path, body, headers)
        except (OSError, http.client.HTTPException, ResponseTooLarge) as exc:
            conn.close()
            raise TransportError(_describe(exc)) from exc

    def _connect(self) -> http.client.HTTPConnection:
        try:
            return self._new()
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(_describe(exc), sent=False) from exc

    def _roundtrip(self, conn, method: str, path: str, body: Optional[bytes],
                   headers: dict[str, str]) -> Response:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        limit = self.max_response_bytes
        if int(resp.getheader("Content-Length") or 0) > limit:
            raise ResponseTooLarge(f"the answer is larger than {limit} bytes")
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise ResponseTooLarge(f"the answer is larger than {limit} bytes")
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                          conn.peer_cert_der)
        if resp.will_close:
            conn.close()
        else:
            try:
                self._idle.put_nowait(conn)
            except queue.Full:
                conn.close()
        return result

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ResponseTooLarge):
        return str(exc)
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, socket.timeout) or isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


class Pools:
    """One Pool per (host, port), created on first use."""

    def __init__(self, factory: Callable[[str, int], Pool]) -> None:
        self._factory = factory
        self._pools: dict[tuple[str, int], Pool] = {}
        self._lock = threading.Lock()

    def get(self, host: str, port: int) -> Pool:
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = self._factory(host, port)
        return pool

    def close(self) -> None:
        for p in list(self._pools.values()):
            p.close()


def pin_to(fingerprints: frozenset[str]) -> Callable[[bytes], None]:
    def check(der: bytes) -> None:
        fp = hashlib.sha256(der).hexdigest()
        if fp not in fingerprints:
            raise ssl.SSLError(f"peer certificate sha256 {fp[:16]}… is not registered "
                               "for this security server in the federation configuration")
    return check


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
