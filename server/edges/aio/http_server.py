"""HTTP/1.1 server side of a connection, on the event loop, parsed by httptools.

One ``HttpConnection`` per accepted connection.  Requests on a connection are handled
one after another (a pipelined request waits; reading pauses while one is handled).
llhttp is strict where RFC 9112 lets a server be: obsolete line folding, whitespace
before a colon, a bare CR, Content-Length with Transfer-Encoding or twice with other
values are all refused with 400 and the connection closed.
"""
from __future__ import annotations

import asyncio
import collections
import re
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Awaitable, Callable, Optional
from urllib.parse import unquote_to_bytes

import httptools

from ..answers import status_line
from .admission import Admission

MAX_HEAD_BYTES = 64 * 1024      # request line and header fields of one request
MAX_HEADER_FIELDS = 100
IDLE_TIMEOUT = 10.0             # seconds a connection may wait between requests
HEAD_TIMEOUT = 10.0             # seconds from a request's first byte to its whole head
_ENCODED_SLASH = re.compile(rb"%2[Ff]")
# Request body bytes all connections of a server may hold at once (read, not yet
# answered); cheroot's bound was its thread count times the body limit.
BODY_BUDGET = 256 * 1024 * 1024
BODY_TIMEOUT = 60.0             # seconds from a request's head to the end of its body
MAX_PIPELINED = 16              # requests read ahead of the one being handled
CHUNK_FRAMING = 64              # bytes of size line and CRLFs allowed per chunk
CHUNKED_STEP = 1024 * 1024      # first budget of a chunked body; it doubles as it grows


@dataclass
class Request:
    method: str
    target: str                          # as sent: origin-form or absolute-form
    path: str                            # of the target, %-escapes decoded (latin-1)
    query: str
    headers: dict[str, str]              # lower-cased names; repeats joined by ", "
    body: bytes
    http_version: str
    peer_cert_der: Optional[bytes]
    client_address: tuple
    server_address: tuple
    tls: bool
    #: the body exceeded the limit: not read (the answer closes the connection)
    too_large: Optional[str] = None


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False


Handler = Callable[[Request], Awaitable[Answer]]


class _HeadTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


class _Enough(Exception):
    """Stops parsing: MAX_PIPELINED requests wait already."""


_date_cache = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


@dataclass
class Connections:
    """The server's open connections, for a graceful stop, and the budget of request
    body bytes they may hold at once: each request reserves its announced length
    before its body is read (others wait, unread); a chunked body reserves
    ``chunked_step`` and then more as it arrives (doubling), so that slow uploads hold
    little.  One chunked body at a time may overdraw the budget: the first that is
    refused more while its bytes keep coming, until it is answered; so uploads that
    together exceed the budget finish one after another instead of waiting on each
    other, and the budget is exceeded by at most one body."""
    open: set = field(default_factory=set)
    stopping: bool = False        # answers say "Connection: close"; nothing new is read
    body_budget: int = BODY_BUDGET
    chunked_step: int = CHUNKED_STEP
    reserved: int = 0
    waiting: collections.deque = field(default_factory=collections.deque)
    overdraft: Optional["HttpConnection"] = None   # may reserve past the budget

    def reserve(self, n: int) -> bool:
        # With nothing reserved, any one request may go (none exceeds the limit).
        if self.reserved and self.reserved + n > self.body_budget:
            return False
        self.reserved += n
        return True

    def release(self, n: int) -> None:
        self.reserved -= n
        while self.waiting:
            conn = self.waiting[0]
            if conn.stopped or conn.transport.is_closing() or not conn.wanted:
                self.waiting.popleft()
                continue
            if not self.reserve(conn.wanted):
                break
            self.waiting.popleft()
            conn.granted()
        if self.overdraft is None:
            # a body being read that waits for more may overdraw (wherever it waits)
            for conn in self.waiting:
                if conn.wanted and conn.chunked and not conn.stopped \
                        and not conn.transport.is_closing():
                    self.waiting.remove(conn)
                    self.overdraft = conn
                    self.reserved += conn.wanted
                    conn.granted()
                    break

    def grow(self, conn: "HttpConnection", n: int) -> bool:
        """``n`` more bytes for ``conn``'s chunked body: within the budget, or as the
        one overdraft."""
        if self.reserve(n):
            return True
        if self.overdraft is None or self.overdraft is conn:
            self.overdraft = conn
            self.reserved += n
            return True
        return False

    def end_overdraft(self, conn: "HttpConnection") -> None:
        """``conn`` holds no overdrawn body any more: another may overdraw."""
        if self.overdraft is conn:
            self.overdraft = None
            self.release(0)

    def idle_close(self) -> None:
        self.stopping = True
        for c in list(self.open):
            if not c.busy and not c.ready and not c.transport.is_closing():
                c.close()

    def busy(self) -> int:
        return sum(1 for c in self.open if c.busy or c.ready)

    def close_all(self) -> None:
        for c in list(self.open):
            c.transport.abort()


class HttpConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, *, server_name: str,
                 connections: Connections, idle_timeout: float = IDLE_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT, head_timeout: float = HEAD_TIMEOUT,
                 admission: Optional[Admission] = None) -> None:
        self.handler = handler            # also says ``max_bytes``, the body limit
        self.server_name = server_name
        self.connections = connections
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.head_timeout = head_timeout
        self.admission = admission
        self.admitted: Optional[str] = None     # the peer address counted there
        self.body_timer: Optional[asyncio.TimerHandle] = None   # the message's deadline
        self.msg_deadline: Optional[float] = None
        self.transport: Optional[asyncio.Transport] = None
        self.busy = False          # a request is being handled
        self.stopped = False       # no more input is read (closing, refused, EOF)
        self.refusal: Optional[Answer] = None   # a 400/431 owed after the answers
        self.write_paused = False  # the client does not read: answer nothing more
        # complete requests not yet handled: (request, keep-alive, bytes reserved)
        self.ready: collections.deque[tuple[Request, bool, int]] = collections.deque()
        self.msg_reserved = 0      # budget reserved for the body being read
        self.wanted = 0            # budget waited for (reading is paused meanwhile)
        self.chunked = False       # its chunked body holds a growing reservation

    # -- connection -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_obj = transport.get_extra_info("ssl_object")
        self.tls = ssl_obj is not None
        self.peer_cert_der = ssl_obj.getpeercert(binary_form=True) if ssl_obj else None
        self.client_address = transport.get_extra_info("peername") or ("", 0)
        self.server_address = transport.get_extra_info("sockname") or ("", 0)
        self.parser = httptools.HttpRequestParser(self)
        self._reset_message()
        self.in_message = False
        self.messages = 0          # messages begun on this connection
        self.raw_head = 0          # bytes of later reads while a head is incomplete
        self.head_began = False    # the head began in the read being parsed
        self.framing = 0           # bytes of a body's reads that were not body bytes
        self.continue_due = False  # 100 Continue owed once this request is current
        self.idle_timer: Optional[asyncio.TimerHandle] = None
        self.idle_deadline: Optional[float] = None
        self.connections.open.add(self)
        self._arm_idle()
        if self.admission is not None:
            peer = str(self.client_address[0])
            refused = self.admission.admit(peer)
            if refused is not None:
                self._refuse(503, refused)
                return
            self.admitted = peer

    def connection_lost(self, exc) -> None:
        if self.admitted is not None:
            self.admission.leave(self.admitted)
            self.admitted = None
        self._clear_message_deadline()
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        self._stop_growing()
        self.stopped = True
        self.connections.open.discard(self)
        self._disarm_idle()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self._release(self.msg_reserved + sum(r for _, _, r in self.ready))
        self._unqueue()
        self.msg_reserved = 0
        self.ready.clear()     # the request being handled releases its own share
        if not self.busy:      # (and then ends an overdraft it holds)
            self.connections.end_overdraft(self)

    def _unqueue(self) -> None:
        if self.wanted:
            try:
                self.connections.waiting.remove(self)
            except ValueError:
                pass
            self.wanted = 0

    def _take_unreserved(self) -> None:
        # httptools parsed on past the head in the same read (pause_reading only stops
        # later reads): the body was read anyway, so account for it (over the budget by
        # at most one read) and stop waiting.
        if self.wanted:
            need = self.wanted
            self._unqueue()
            self.connections.reserved += need
            self.msg_reserved += need

    def _release(self, n: int) -> None:
        if n:
            self.connections.release(n)

    def granted(self) -> None:
        """The budget this connection waited for is reserved: read its body."""
        self.msg_reserved, self.wanted = self.msg_reserved + self.wanted, 0
        if not self.stopped and not self.busy and not self.ready:
            if self.continue_due and self.in_message:
                self.continue_due = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent in full, then close."""
        self.stopped = True
        if self.busy or self.ready:
            return True            # keep the transport open to write (plain TCP)
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._proceed()

    def close(self) -> None:
        """Close once what is buffered is sent, and for good if it cannot be.  Safe to
        call again (an SSL transport must not be closed twice)."""
        self.stopped = True
        transport = self.transport
        if transport.is_closing():
            return
        unsent = transport.get_write_buffer_size()
        transport.close()
        if unsent:
            self.loop.call_later(self.idle_timeout, transport.abort)

    def _arm_idle(self) -> None:
        """The connection may now idle ``idle_timeout`` seconds.  Armed and disarmed
        twice per request, so the timer is moved lazily: one timer per connection,
        which on firing early re-arms itself for what is left."""
        self.idle_deadline = self.loop.time() + self.idle_timeout
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.idle_deadline, self._idle_due)

    def _disarm_idle(self) -> None:
        self.idle_deadline = None

    def _idle_due(self) -> None:
        self.idle_timer = None
        deadline = self.idle_deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self.idle_timer = self.loop.call_at(deadline, self._idle_due)
            return
        self._on_idle()

    def _on_idle(self) -> None:
        # (a connection waiting for body budget has sent its request: not idle)
        if not self.busy and not self.wanted:
            self.close()

    # -- parsing ----------------------------------------------------------------
    def _reset_message(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.headers: dict[str, str] = {}

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        if not self.busy and self.in_message:
            # bytes of a request restart the idle clock; bytes between requests (the
            # CRLFs llhttp skips) do not, or a client could hold a connection with them
            self._arm_idle()
        messages, size, in_body = self.messages, self.size, \
            self.in_message and self.headers_done
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self._refuse(431, str(cause))
            elif not isinstance(cause, (_BodyTooLarge, _Enough)):   # answered already
                self._refuse(400, "Bad Request")
            return
        except httptools.HttpParserUpgrade:
            return self._refuse(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            return self._refuse(400, f"Malformed request: {exc}")
        if self.stopped or not self.in_message or self.messages != messages:
            self.head_began = False
            return
        if not self.headers_done:
            # A head still incomplete: httptools buffers a partial field itself.
            # Reads after the one it began in count whole.
            if self.head_began:
                self.head_began = False
            else:
                self.raw_head += len(data)
            if self.raw_head > MAX_HEAD_BYTES:
                self._refuse(431, "Request line and header fields are too large")
        elif in_body:
            # chunk-size lines, extensions and trailer fields: bounded as well
            # (httptools buffers an extension or a trailer field whole)
            self.framing += len(data) - (self.size - size)
            if self.framing > MAX_HEAD_BYTES + CHUNK_FRAMING * self.chunk_count:
                self._refuse(400, "Chunk framing or trailer fields are too large")

    def on_message_begin(self) -> None:
        self._reset_message()
        self.in_message = True
        self.messages += 1
        self.raw_head, self.head_began, self.framing, self.chunk_count = 0, True, 0, 0
        # The whole head must arrive within head_timeout: a byte now and then does
        # not keep a connection (each one restarts only the idle clock).
        self._arm_message(self.head_timeout)
        if self.busy or self.ready:    # pipelined: parse this one, then wait
            self.transport.pause_reading()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge("Request line and header fields are too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return                         # trailer fields of a chunked body
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge("Request line and header fields are too large")
        if len(self.fields) >= MAX_HEADER_FIELDS:
            raise _HeadTooLarge(f"More than {MAX_HEADER_FIELDS} header fields")
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # The whole body must arrive within body_timeout: a client trickling it (and
        # holding its share of the body budget) is refused with 408.
        self._arm_message(self.body_timeout)
        headers = self.headers
        for name, value in self.fields:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            old = headers.get(key)
            headers[key] = text if old is None else f"{old}, {text}"
        self.max_body = self.handler.max_bytes
        length = headers.get("content-length")
        if length is not None and int(length) > self.max_body:
            self._too_large(f"the message is {int(length)} bytes; the limit is "
                            f"{self.max_body}")
        chunked = length is None \
            and "chunked" in headers.get("transfer-encoding", "").lower()
        need = int(length) if length is not None else (
            min(self.connections.chunked_step, self.max_body) if chunked else 0)
        self.chunked = chunked
        if need:
            if self.connections.reserve(need):
                self.msg_reserved = need
            else:                          # wait, unread, for bodies to be answered
                self.wanted = need
                self.transport.pause_reading()
                self.connections.waiting.append(self)
        if headers.get("expect", "").lower() == "100-continue":
            if self.busy or self.ready or self.wanted:
                self.continue_due = True   # after the answers before it
            else:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_chunk_header(self) -> None:
        self.chunk_count += 1

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._too_large(f"the message exceeds {self.max_body} bytes")
        self.chunks.append(body)
        if self.chunked and self.size > self.msg_reserved and not self.wanted:
            self._grow()

    def _grow(self) -> None:
        """More budget for a chunked body that outgrew its reservation (the bytes of
        this read are held anyway: over the budget by at most one read)."""
        step = min(max(self.connections.chunked_step, self.msg_reserved),
                   self.max_body - self.msg_reserved)
        if step <= 0:
            return
        if self.connections.grow(self, step):
            self.msg_reserved += step
        else:                              # wait, unread, for budget to come back
            self.wanted = step
            self.transport.pause_reading()
            self.connections.waiting.append(self)

    def _stop_growing(self) -> None:
        """The body is read (or abandoned): it asks for no more budget."""
        self.chunked = False

    def on_message_complete(self) -> None:
        self._clear_message_deadline()
        self._take_unreserved()
        self._stop_growing()
        self.in_message = False
        self.continue_due = False
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        # HTTP/1.0 connections are closed after the answer (as cheroot does)
        keep_alive = self.parser.should_keep_alive() and \
            self.parser.get_http_version() != "1.0"
        self.ready.append((self._request(body), keep_alive, self.msg_reserved))
        self.msg_reserved = 0
        self._next()
        if len(self.ready) >= MAX_PIPELINED:
            # answer these, then close: a client cannot queue work without end
            self.stopped = True
            self.transport.pause_reading()
            raise _Enough()

    def _request(self, body: bytes, too_large: Optional[str] = None) -> Request:
        parser = self.parser
        try:
            url = httptools.parse_url(self.url)
            raw_path = url.path or b"/"
            query = (url.query or b"").decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            raw_path, query = self.url.partition(b"?")[0] or b"/", ""
        # "%2F" stays encoded (as cheroot and most WSGI servers keep it): an encoded
        # slash is not a path separator
        path = "%2F".join(unquote_to_bytes(part).decode("latin-1")
                          for part in _ENCODED_SLASH.split(raw_path))
        return Request(parser.get_method().decode("ascii"), self.url.decode("latin-1"),
                       path, query, self.headers, body, parser.get_http_version(),
                       self.peer_cert_der, self.client_address, self.server_address,
                       self.tls, too_large)

    def _arm_message(self, timeout: float) -> None:
        """The message being read must be complete (its head, then its body) within
        ``timeout`` s from now.  One timer per connection, moved lazily as the idle
        one is: it re-arms itself when it fires before the deadline."""
        self.msg_deadline = self.loop.time() + timeout
        timer = self.body_timer
        if timer is not None and timer.when() > self.msg_deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self.body_timer = self.loop.call_at(self.msg_deadline, self._message_due)

    def _clear_message_deadline(self) -> None:
        """No deadline for now (the timer, if any, drops itself when it fires)."""
        self.msg_deadline = None

    def _message_due(self) -> None:
        self.body_timer = None
        deadline = self.msg_deadline
        if deadline is None or self.stopped or not self.in_message:
            return
        if self.loop.time() < deadline:
            self.body_timer = self.loop.call_at(deadline, self._message_due)
            return
        if self.headers_done:
            self._refuse(408, f"The request body did not arrive within "
                              f"{self.body_timeout:g} s")
        else:
            self._refuse(408, f"The request head did not arrive within "
                              f"{self.head_timeout:g} s")

    def _too_large(self, why: str) -> None:
        """Answer now (after the answers before it), without reading the body, and
        close afterwards."""
        self._unqueue()
        self._stop_growing()
        self.stopped = True
        self.transport.pause_reading()
        self.ready.append((self._request(b"", why), False, self.msg_reserved))
        self.msg_reserved = 0
        self._next()
        raise _BodyTooLarge()

    # -- answering --------------------------------------------------------------
    def _next(self) -> None:
        if self.busy or not self.ready or self.write_paused:
            return
        self.busy = True
        self._disarm_idle()
        request, keep_alive, reserved = self.ready.popleft()
        self.loop.create_task(self._answer(request, keep_alive, reserved))

    async def _answer(self, request: Request, keep_alive: bool, reserved: int) -> None:
        try:
            answer = await self.handler(request)
        except Exception:                      # handlers answer faults themselves
            answer = Answer(500, [("Content-Type", "text/plain")],
                            b"Internal Server Error", close=True)
        finally:
            self._release(reserved)
            if not self.msg_reserved:
                self.connections.end_overdraft(self)
        ends = answer.close or not keep_alive or self.connections.stopping
        # a malformed request came after this one: its 400 follows this answer
        refusal = self.refusal if not ends and not self.ready else None
        last = ends or (self.stopped and not self.ready)
        try:
            self._write(answer, last and refusal is None,
                        head_only=request.method == "HEAD")
            if refusal is not None:
                self._write(refusal, True)
        except Exception:                      # an answer that cannot be encoded
            self.busy = False
            self.transport.abort()
            return
        self.busy = False
        if last or self.transport.is_closing():
            self._release(sum(r for _, _, r in self.ready))
            self.ready.clear()
            self.close()
            return
        if not self.write_paused:
            self._proceed()
        else:
            self._arm_idle()       # a client that never reads is dropped in time

    def _proceed(self) -> None:
        """The answer is out: the next queued request, or read on."""
        if self.ready:
            self._next()
            return
        if self.stopped:
            self.close()
            return
        self._arm_idle()
        if self.wanted:
            return                 # the body waits for budget (granted() reads on)
        if self.continue_due and self.in_message:
            self.continue_due = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.transport.resume_reading()

    def _write(self, answer: Answer, close: bool, head_only: bool = False) -> None:
        if self.transport.is_closing():
            return
        lines = [f"HTTP/1.1 {status_line(answer.status)}\r\nServer: {self.server_name}\r\n"
                 f"Date: {_http_date()}\r\n"]
        for name, value in answer.headers:
            if name.lower() != "content-length":
                lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(answer.body)}\r\n")
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if head_only:
            self.transport.write(head)
        elif len(answer.body) <= 65536:
            self.transport.write(head + answer.body)
        else:
            self.transport.writelines((head, answer.body))

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be parsed: a plain answer after the answers to the
        requests before it, then close."""
        self.stopped = True
        self._stop_growing()
        self.transport.pause_reading()
        self.refusal = Answer(status, [("Content-Type", "text/plain")],
                              message.encode("latin-1", "replace"))
        if not self.busy and not self.ready:
            self._write(self.refusal, close=True)
            self.refusal = None
            self.close()
