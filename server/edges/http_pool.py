"""A small keep-alive HTTP/1.1 connection pool, for peers and backends.

Why not urllib3: we must see the peer certificate of each new TLS connection to pin
it against the federation configuration, and keep the per-call path short.
Every socket or HTTP error becomes a ``TransportError`` here, at the I/O call.
"""
from __future__ import annotations

import hashlib
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import httptools


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


class _StaleConnection(Exception):
    """A pooled keep-alive connection had been closed by the peer before we used it.

    Nothing of our request reached the application, so one retry on a fresh
    connection is safe.
    """


class _BadResponse(Exception):
    pass


# What sendall/recv raise on a connection the peer had already closed.
_CLOSED = (BrokenPipeError, ConnectionResetError)


class _Connection:
    """One socket (TLS or plain) with the peer certificate it presented."""

    __slots__ = ("sock", "peer_cert_der")

    def __init__(self, sock, peer_cert_der: Optional[bytes]) -> None:
        self.sock, self.peer_cert_der = sock, peer_cert_der

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _ResponseReader:
    """httptools callbacks: collects one response, refusing more than ``limit`` bytes."""

    __slots__ = ("limit", "headers", "chunks", "size", "headers_done", "complete",
                 "keep_alive", "parser")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = self.complete = self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if int(self.headers.get("content-length") or 0) > self.limit:
            raise ResponseTooLarge(f"the answer is larger than {self.limit} bytes")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            raise ResponseTooLarge(f"the answer is larger than {self.limit} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        # Asked here: once feed_data returns, the parser has reset its state.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class Pool:
    """Connections to one (host, port); thread-safe; ``maxsize`` idle ones kept.

    Requests are written in one send; responses are parsed with httptools (the C
    llhttp parser also used by uvicorn), which is several times cheaper per call
    than http.client's e-mail based header parser.
    """

    def __init__(self, host: str, port: int, *, ssl_context: Optional[ssl.SSLContext] = None,
                 timeout: float = 60.0, maxsize: int = 64,
                 verify_peer: Optional[Callable[[bytes], None]] = None,
                 max_response_bytes: int = 50 * 1024 * 1024) -> None:
        self.host, self.port = host, port
        self.max_response_bytes = max_response_bytes
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.verify_peer = verify_peer
        self._host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize)

    def _new(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is None:
                return _Connection(sock, None)
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            der = sock.getpeercert(binary_form=True)
            if self.verify_peer is not None:
                self.verify_peer(der)
            return _Connection(sock, der)
        except BaseException:
            sock.close()
            raise

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
        message = self._encode(method, path, body, headers)
        try:
            try:
                return self._roundtrip(conn, message)
            except _StaleConnection:
                conn.close()
                if not reused:
                    raise _BadResponse("the server closed the connection without answering")
                conn = self._connect()
                return self._roundtrip(conn, message)
        except (OSError, httptools.HttpParserError, ResponseTooLarge, _BadResponse,
                _StaleConnection) as exc:
            conn.close()
            raise TransportError(_describe(exc)) from exc

    def _connect(self) -> _Connection:
        try:
            return self._new()
        except OSError as exc:
            raise TransportError(_describe(exc), sent=False) from exc

    def _encode(self, method: str, path: str, body: Optional[bytes],
                headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"line break in HTTP header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        return head + body if body else head

    def _roundtrip(self, conn: _Connection, message: bytes) -> Response:
        sock = conn.sock
        try:
            sock.sendall(message)
        except _CLOSED as exc:
            raise _StaleConnection() from exc
        reader = _ResponseReader(self.max_response_bytes)
        parser = reader.parser
        received = False
        while not reader.complete:
            try:
                data = sock.recv(65536)
            except _CLOSED as exc:
                if received:
                    raise
                raise _StaleConnection() from exc
            if not data:
                if not received:
                    raise _StaleConnection()
                if reader.headers_done and "content-length" not in reader.headers \
                        and "transfer-encoding" not in reader.headers:
                    break          # an answer delimited by closing the connection
                raise _BadResponse("the server closed the connection in mid-answer")
            received = True
            try:
                parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                if isinstance(exc.__context__, ResponseTooLarge):
                    raise exc.__context__ from None
                raise
        result = Response(parser.get_status_code(), reader.headers,
                          b"".join(reader.chunks), conn.peer_cert_der)
        if reader.keep_alive:
            try:
                self._idle.put_nowait(conn)
            except queue.Full:
                conn.close()
        else:
            conn.close()
        return result

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (ResponseTooLarge, _BadResponse)):
        return str(exc)
    if isinstance(exc, _StaleConnection):
        return "the server closed the connection without answering"
    if isinstance(exc, httptools.HttpParserError):
        return f"invalid HTTP answer ({exc})"
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
