"""A small keep-alive HTTP/1.1 connection pool, for peers and backends.

Why not urllib3: we must see the peer certificate of each new TLS connection to pin
it against the federation configuration, and keep the per-call path short.
Every socket or HTTP error becomes a ``TransportError`` here, at the I/O call.
"""
from __future__ import annotations

import hashlib
import queue
import re
import select
import socket
import ssl
import threading
import time
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


class _NotSent(Exception):
    """Sending failed because the peer had already closed a pooled connection: none
    of the request reached the application, so it may go out on a fresh one."""


class _CertificateRefused(Exception):
    """The server refused our TLS client certificate.  With TLS 1.3 the client's side
    of the handshake completes first and the refusal (an alert) arrives with the
    first read or write; the server has handled no request on such a connection."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Alerts a server sends while checking a client certificate, during the handshake.
_CERTIFICATE_ALERTS = frozenset({
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
})


def _certificate_refused(exc: BaseException, received: int) -> bool:
    return not received and isinstance(exc, ssl.SSLError) \
        and getattr(exc, "reason", None) in _CERTIFICATE_ALERTS


class _BadResponse(Exception):
    pass


class _ExtraBytes(Exception):
    """The peer sent more after a complete answer (the connection is not reused)."""


# What recv raises on a connection the peer has reset.
_CLOSED = (BrokenPipeError, ConnectionResetError)
# What sending raises on a connection the peer has closed (TLS: an EOF instead).
_CLOSED_WHILE_SENDING = (*_CLOSED, ssl.SSLEOFError)
MAX_HEAD_BYTES = 64 * 1024      # status line + header fields of an answer
MAX_HEADER_FIELDS = 100
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_TARGET = re.compile(r"[\x21-\x7e]+\Z")


class _Connection:
    """One socket (TLS or plain) with the peer certificate it presented."""

    __slots__ = ("sock", "peer_cert_der")

    def __init__(self, sock, peer_cert_der: Optional[bytes]) -> None:
        self.sock, self.peer_cert_der = sock, peer_cert_der

    def idle_and_open(self) -> bool:
        """False if the peer closed this idle connection (or sent anything unasked):
        such a connection must not carry a request."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _ResponseReader:
    """httptools callbacks: collects one final answer (1xx interim answers skipped),
    refusing more than ``limit`` body bytes or MAX_HEADER_FIELDS header fields."""

    __slots__ = ("limit", "headers", "chunks", "size", "headers_done", "complete",
                 "keep_alive", "parser", "fields", "interim", "status")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = self.fields = self.status = 0
        self.headers_done = self.complete = self.keep_alive = self.interim = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        if self.complete:
            raise _ExtraBytes()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return                 # trailer fields of a chunked answer: not headers
        self.fields += 1
        if self.fields > MAX_HEADER_FIELDS:
            raise ResponseTooLarge(f"the answer has more than {MAX_HEADER_FIELDS} "
                                   "header fields")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise _BadResponse("the server switched protocols (HTTP 101)")
            self.interim = True    # 100 Continue, 103 Early Hints: the answer follows
            self.headers, self.fields = {}, 0
            return
        self.headers_done = True
        self.status = status
        if int(self.headers.get("content-length") or 0) > self.limit:
            raise ResponseTooLarge(f"the answer is larger than {self.limit} bytes")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            raise ResponseTooLarge(f"the answer is larger than {self.limit} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        # Asked here: once feed_data returns, the parser has reset its state.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class Pool:
    """Connections to one (host, port); thread-safe; ``maxsize`` idle ones kept.

    Requests are written in one send; responses are parsed with httptools (the C
    llhttp parser also used by uvicorn), which is several times cheaper per call
    than http.client's e-mail based header parser.  ``timeout`` bounds connecting
    and the whole wait for an answer.
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
        self._host_header = host_header(host, port)
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize)
        self._closed = False

    def _new(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is None:
                return _Connection(sock, None)
            # A TCP FIN without TLS close_notify is an error, not the end of an
            # answer: otherwise anyone on the path could cut an answer short.
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host,
                                                suppress_ragged_eofs=False)
            der = sock.getpeercert(binary_form=True)
            if der is None:
                raise ssl.SSLError("the server presented no certificate")
            if self.verify_peer is not None:
                self.verify_peer(der)   # before any byte of a request is sent
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
        message = self._encode(method, path, body, headers)   # ValueError: ours to fix
        conn, reused = self._checkout()
        try:
            try:
                return self._roundtrip(conn, message, fresh=not reused)
            except _NotSent:
                if not reused:
                    raise
                conn.close()   # the peer had closed it while idle: one fresh try
                conn = self._connect()
                return self._roundtrip(conn, message, fresh=True)
        except _NotSent as exc:
            conn.close()
            raise TransportError("the server closed the connection before the request "
                                 "was sent", sent=False) from exc
        except _CertificateRefused as exc:
            conn.close()
            raise TransportError(
                f"the server refused this server's TLS certificate ({exc.reason}) and "
                "handled no request: check that it trusts our federation CA and has "
                "this server's authentication certificate registered",
                sent=False) from exc
        except (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade,
                ResponseTooLarge, _BadResponse) as exc:
            conn.close()
            raise TransportError(describe(exc)) from exc

    def _checkout(self) -> tuple[_Connection, bool]:
        """An idle connection still open (closed ones are dropped), else a new one."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(), False
            try:
                if conn.idle_and_open():
                    return conn, True
            except (OSError, ValueError):
                pass
            conn.close()

    def _connect(self) -> _Connection:
        try:
            return self._new()
        except OSError as exc:
            raise TransportError(describe(exc), sent=False) from exc

    def _encode(self, method: str, path: str, body: Optional[bytes],
                headers: dict[str, str]) -> bytes:
        return encode_request(self._host_header, method, path, body, headers)

    def _roundtrip(self, conn: _Connection, message: bytes, *, fresh: bool) -> Response:
        """``fresh``: the connection was made for this request.  Only then can a
        certificate alert mean that no request was handled: on a used connection
        the server accepted our certificate long ago."""
        sock = conn.sock
        # A server may answer before reading the whole request (413 for a body over
        # its limit) and close, so that our send fails with a reset: the answer is
        # still readable then, and it, not the reset, is what the caller must see.
        send_failed: Optional[OSError] = None
        try:
            _send_within(sock, message, time.monotonic() + self.timeout)
        except _CLOSED_WHILE_SENDING as exc:
            send_failed = exc
        except ssl.SSLError as exc:
            if fresh and _certificate_refused(exc, 0):
                raise _CertificateRefused(exc.reason) from exc
            raise
        reader = _ResponseReader(self.max_response_bytes)
        parser = reader.parser
        received = 0
        deadline = time.monotonic() + self.timeout
        while not reader.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except ssl.SSLEOFError:
                data = None        # closed without close_notify
            except ssl.SSLError as exc:
                if fresh and _certificate_refused(exc, received):
                    raise _CertificateRefused(exc.reason) from exc
                raise
            except _CLOSED:
                if send_failed is not None and not received:
                    raise _NotSent() from send_failed
                raise
            if not data:
                if send_failed is not None and not received:
                    raise _NotSent() from send_failed
                if not received:
                    # The request may have been processed: never sent again.
                    raise _BadResponse("the server closed the connection without "
                                       "answering")
                # After a failed send, a plain socket reports the reset once, to the
                # send; the read then sees an end that may have cut the answer short.
                clean_end = data is not None and (
                    send_failed is None or isinstance(sock, ssl.SSLSocket))
                if clean_end and reader.headers_done \
                        and "content-length" not in reader.headers \
                        and "transfer-encoding" not in reader.headers:
                    break          # an answer delimited by (a clean) close
                raise _BadResponse("the server closed the connection in mid-answer")
            received += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _ExtraBytes):
                    reader.keep_alive = False      # answer complete; stream suspect
                    break
                if isinstance(cause, (ResponseTooLarge, _BadResponse)):
                    raise cause from None
                raise
            except httptools.HttpParserError:
                if not reader.complete:
                    raise
                reader.keep_alive = False   # data after a "Connection: close" answer
                break
            if not reader.headers_done:
                if received > MAX_HEAD_BYTES:
                    raise ResponseTooLarge("the answer's status line and headers exceed "
                                           f"{MAX_HEAD_BYTES} bytes")
            elif received - reader.size > MAX_HEAD_BYTES + reader.size // 4:
                # chunk framing and trailers: a little per chunk, not without end
                raise ResponseTooLarge("the answer's chunk framing or trailer fields "
                                       "are too large")
        result = Response(reader.status, reader.headers, b"".join(reader.chunks), conn.peer_cert_der)
        if reader.complete and reader.keep_alive and send_failed is None \
                and not self._closed:
            try:
                self._idle.put_nowait(conn)
            except queue.Full:
                conn.close()
            if self._closed:         # close() ran meanwhile
                self._close_idle()
        else:
            conn.close()
        return result

    def close(self) -> None:
        """Close the idle connections now and each busy one when its answer is in
        (later requests still work, on connections that are not kept)."""
        self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def encode_request(host: str, method: str, path: str, body: Optional[bytes],
                   headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request, head and body; ValueError for what cannot be sent (a
    header value with a line break would be header injection)."""
    if not _TOKEN.match(method) or not _TARGET.match(path):
        raise ValueError(f"invalid HTTP request line {method!r} {path!r}")
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers.items():
        if not _TOKEN.match(name) or "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"invalid HTTP header {name!r}: a token name and a "
                             "value without line breaks are required")
        lines.append(f"{name}: {value}\r\n")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"HTTP header with a character outside Latin-1: {exc}") \
            from None
    return head + body if body else head


def _send_within(sock, data: bytes, deadline: float) -> None:
    """``sendall`` bounded as a whole: a peer reading slowly cannot stretch it (an
    SSLSocket applies its timeout to each of its sends)."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)
        view = view[sock.send(view):]


def describe(exc: BaseException) -> str:
    """What went wrong on the wire, in words for a fault or the log."""
    if isinstance(exc, (ResponseTooLarge, _BadResponse)):
        return str(exc)
    if isinstance(exc, httptools.HttpParserUpgrade):
        return "the server switched protocols (HTTP upgrade)"
    if isinstance(exc, httptools.HttpParserError):
        return f"invalid HTTP answer ({exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {getattr(exc, 'reason', None) or exc}"
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
