"""The client side of HTTP/1.1 without I/O: request encoding, answer reading
(httptools), certificate pins, and the errors a transport maps its failures to.

aio/upstream.py's connection pool, for peers and backends, is the transport over it.
Why not urllib3 or aiohttp's client: we must see the peer certificate of each new TLS
connection to pin it against the federation configuration.
"""
from __future__ import annotations

import hashlib
import re
import socket
import ssl
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


# Alerts a server sends while checking a client certificate, during the handshake.
_CERTIFICATE_ALERTS = frozenset({
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
})


def certificate_refused(exc: BaseException, received: int) -> bool:
    return not received and isinstance(exc, ssl.SSLError) \
        and getattr(exc, "reason", None) in _CERTIFICATE_ALERTS


class BadResponse(Exception):
    pass


class ExtraBytes(Exception):
    """The peer sent more after a complete answer (the connection is not reused)."""


MAX_HEAD_BYTES = 64 * 1024      # status line + header fields of an answer
MAX_HEADER_FIELDS = 100
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_TARGET = re.compile(r"[\x21-\x7e]+\Z")


class ResponseReader:
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
            raise ExtraBytes()

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
                raise BadResponse("the server switched protocols (HTTP 101)")
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


def describe(exc: BaseException) -> str:
    """What went wrong on the wire, in words for a fault or the log."""
    if isinstance(exc, (ResponseTooLarge, BadResponse)):
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
