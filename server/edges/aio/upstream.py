"""Keep-alive HTTP/1.1 connections to one peer or backend, on the event loop.

The contract: the peer certificate is pinned before any byte of a request leaves,
every failure is a ``TransportError`` whose ``sent`` is False only when the request
certainly was not handled, answers are parsed by http_wire.ResponseReader.
"""
from __future__ import annotations

import asyncio
import select
import socket
import ssl
from typing import Callable, Optional

import httptools

from ..http_wire import (MAX_HEAD_BYTES, BadResponse, ExtraBytes, Response, ResponseReader,
                         ResponseTooLarge, TransportError, certificate_refused, describe,
                         encode_request, host_header)

MAX_AGE = 30.0         # s a kept connection is reused, at most
MAX_REQUESTS = 1000    # requests one kept connection carries, at most


class _Closed(Exception):
    """The connection ended before the answer was complete.  ``unsent``: part of the
    request had not left this process (so the peer cannot have handled it)."""

    def __init__(self, cause: Optional[BaseException], received: int,
                 unsent: bool) -> None:
        super().__init__(str(cause) if cause else "closed")
        self.cause, self.received, self.unsent = cause, received, unsent


class _Upstream(asyncio.Protocol):
    """One connection; carries one request at a time."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.reader: Optional[ResponseReader] = None
        self.waiter: Optional[asyncio.Future] = None
        self.received = 0
        self.open = True
        self.lost: Optional[BaseException] = None    # why the connection ended
        self.unsent = False        # part of the request is still in the write buffer
        self.peer_cert_der: Optional[bytes] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.born = 0.0            # loop time the connection was made
        self.requests = 0          # requests it carried

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ended = asyncio.Event()
        # pause_writing() as long as any of the request is unwritten (high=0 would
        # leave an SSL transport paused for good: it pauses on size >= high)
        transport.set_write_buffer_limits(high=1, low=0)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                      socket.TCP_NODELAY, 1)

    def begin(self, message: bytes, reader: ResponseReader,
              timeout: float) -> asyncio.Future:
        """Send ``message``; the future settles when the answer is complete, or fails
        (TimeoutError after ``timeout`` seconds: a timer, not a task per request)."""
        self.reader, self.received = reader, 0
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_later(timeout, self._timed_out)
        self.unsent = False
        self.transport.write(message)
        return self.waiter

    def pause_writing(self) -> None:
        self.unsent = True

    def resume_writing(self) -> None:
        self.unsent = False

    def usable(self) -> bool:
        """Idle, open, and nothing arrived unasked (a close the loop has not seen yet
        shows as readable)."""
        if not self.open or self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None or reader.complete:
            # Bytes nobody asked for: this connection cannot carry another request.
            self.open = False
            self.transport.close()
            return
        self.received += len(data)
        try:
            reader.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ExtraBytes):
                reader.keep_alive = False    # answer complete; the stream is suspect
            elif isinstance(cause, (ResponseTooLarge, BadResponse)):
                return self._fail(cause)
            else:
                return self._fail(exc)
        except httptools.HttpParserError as exc:
            if not reader.complete:
                return self._fail(exc)
            reader.keep_alive = False        # data after a "Connection: close" answer
        except (httptools.HttpParserUpgrade, ResponseTooLarge, BadResponse) as exc:
            return self._fail(exc)
        if reader.complete:
            self._settle()
        elif not reader.headers_done:
            if self.received > MAX_HEAD_BYTES:
                self._fail(ResponseTooLarge("the answer's status line and headers "
                                            f"exceed {MAX_HEAD_BYTES} bytes"))
        elif self.received - reader.size > MAX_HEAD_BYTES + reader.size // 4:
            self._fail(ResponseTooLarge("the answer's chunk framing or trailer fields "
                                        "are too large"))

    def eof_received(self) -> bool:
        reader = self.reader
        if reader is not None and not reader.complete and reader.headers_done \
                and "content-length" not in reader.headers \
                and "transfer-encoding" not in reader.headers:
            if self._clean_end():
                reader.complete, reader.keep_alive = True, False   # delimited by close
                self._settle()
            # else: connection_lost reports the answer cut short
        return False

    def _clean_end(self) -> bool:
        """Plain TCP: any end.  TLS: only after close_notify (asyncio calls
        eof_received for a bare TCP FIN too; the SSLObject then still wants data),
        else anyone on the path could cut an answer short."""
        sslobj = self.transport.get_extra_info("ssl_object")
        if sslobj is None:
            return True
        try:
            return sslobj.read(1) == b""
        except ssl.SSLError:
            return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.open = False
        self.lost = exc
        self.ended.set()
        if self.reader is not None and not self.reader.complete:
            self._fail(_Closed(exc, self.received, self.unsent))

    def _settle(self) -> None:
        self._stop_timer()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _timed_out(self) -> None:
        self.timer = None
        self._fail(TimeoutError())

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fail(self, exc: BaseException) -> None:
        self._stop_timer()
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()     # nothing more to send or read on it


def _refused(exc) -> TransportError:
    return TransportError(
        f"the server refused this server's TLS certificate ({exc.reason}) and handled "
        "no request: check that it trusts our federation CA and has this server's "
        "authentication certificate registered", sent=False)


class AsyncPool:
    """Connections to one (host, port), used from one event loop; at most
    ``max_connections`` carry requests at once (others wait, within ``timeout``), at
    most ``maxsize`` are kept idle."""

    def __init__(self, host: str, port: int, *, ssl_context: Optional[ssl.SSLContext] = None,
                 timeout: float = 60.0, maxsize: int = 64, max_connections: int = 64,
                 verify_peer: Optional[Callable[[bytes], None]] = None,
                 max_response_bytes: int = 50 * 1024 * 1024,
                 max_age: float = MAX_AGE, max_requests: int = MAX_REQUESTS) -> None:
        """``max_age`` (s) and ``max_requests``: a kept connection older or more used
        is closed instead of reused, so that a balancer in front of several nodes
        spreads new connections again (a node back from a restart gets traffic)."""
        self.max_age, self.max_requests = max_age, max_requests
        self.host, self.port = host, port
        self.ssl_context, self.timeout, self.maxsize = ssl_context, timeout, maxsize
        self.verify_peer = verify_peer
        self.max_response_bytes = max_response_bytes
        self._host_header = host_header(host, port)
        self._idle: list[_Upstream] = []
        self._closed = False
        self.max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        return await self.request("POST", path, body, headers)

    async def request(self, method: str, path: str, body: Optional[bytes],
                      headers: dict[str, str]) -> Response:
        message = encode_request(self._host_header, method, path, body, headers)
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.timeout)
            except (asyncio.TimeoutError, TimeoutError):
                raise TransportError(
                    f"no connection to the server became free within {self.timeout:g} s "
                    f"(at most {self.max_connections} at once)", sent=False) from None
        else:
            await self._slots.acquire()
        try:
            return await self._request(message)
        finally:
            self._slots.release()

    async def _request(self, message: bytes) -> Response:
        conn = self._checkout()
        fresh = conn is None
        if conn is None:
            conn = await self._connect()
        try:
            try:
                return await self._roundtrip(conn, message)
            except _Closed as exc:
                if fresh or exc.received or not exc.unsent:
                    raise
                # A kept connection the peer had closed: the request did not get out
                # whole, so it cannot have been handled; one try on a fresh one.
                fresh, conn = True, await self._connect()
                return await self._roundtrip(conn, message)
        except _Closed as exc:
            if fresh and certificate_refused(exc.cause, exc.received):
                raise _refused(exc.cause) from None
            if exc.unsent and not exc.received:
                # the request never wholly left: the server cannot have handled it
                raise TransportError("the server closed the connection before the "
                                     "request was sent", sent=False) from None
            if not exc.received:
                # The request may have been processed: never sent again.
                raise TransportError("the server closed the connection without "
                                     "answering") from None
            raise TransportError("the server closed the connection in mid-answer") \
                from None
        except (asyncio.TimeoutError, TimeoutError):
            conn.transport.abort()     # not close(): it would wait to send the rest
            raise TransportError("timed out") from None
        except (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade,
                ResponseTooLarge, BadResponse) as exc:
            conn.transport.abort()
            raise TransportError(describe(exc)) from exc
        except asyncio.CancelledError:
            conn._stop_timer()
            conn.transport.abort()
            raise

    async def _roundtrip(self, conn: _Upstream, message: bytes) -> Response:
        reader = ResponseReader(self.max_response_bytes)
        await conn.begin(message, reader, self.timeout)
        conn.reader = None
        result = Response(reader.status, reader.headers, b"".join(reader.chunks),
                          conn.peer_cert_der)
        conn.requests += 1
        if reader.keep_alive and conn.open and not conn.unsent and not self._closed \
                and not conn.transport.is_closing() and len(self._idle) < self.maxsize \
                and not self._worn(conn):
            self._idle.append(conn)
        else:
            conn.open = False
            conn.transport.close()
        return result

    def _worn(self, conn: _Upstream) -> bool:
        return conn.requests >= self.max_requests or \
            asyncio.get_running_loop().time() - conn.born >= self.max_age

    def _checkout(self) -> Optional[_Upstream]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable() and not self._worn(conn):
                return conn
            conn.transport.close()
        return None

    async def _connect(self) -> _Upstream:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                _Upstream, self.host, self.port, ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context else None),
                self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise TransportError("timed out", sent=False) from None
        except OSError as exc:    # ssl.SSLError and certificate errors included
            raise TransportError(describe(exc), sent=False) from exc
        if self.ssl_context is not None:
            try:
                try:
                    der = conn.transport.get_extra_info("ssl_object").getpeercert(
                        binary_form=True)
                except ValueError:     # the handshake's end was cut off by an alert
                    conn.transport.close()
                    try:
                        await asyncio.wait_for(conn.ended.wait(), 1.0)
                    except (asyncio.TimeoutError, TimeoutError):
                        pass
                    if certificate_refused(conn.lost, 0):
                        raise _refused(conn.lost) from None
                    raise TransportError("the server closed the connection during the "
                                         "TLS handshake", sent=False) from None
                if der is None:
                    raise ssl.SSLError("the server presented no certificate")
                if self.verify_peer is not None:
                    self.verify_peer(der)    # before any byte of a request is sent
            except OSError as exc:
                conn.transport.close()
                raise TransportError(describe(exc), sent=False) from exc
            conn.peer_cert_der = der
        conn.born = loop.time()
        return conn

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().transport.close()


class AsyncPools:
    """One AsyncPool per key, made on first use (one event loop: no lock needed)."""

    def __init__(self, factory: Callable[..., AsyncPool]) -> None:
        self._factory = factory
        self._pools: dict[tuple, AsyncPool] = {}

    def get(self, *key) -> AsyncPool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._factory(*key)
        return pool

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
