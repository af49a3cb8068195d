"""The event-loop keep-alive client (edges/aio/upstream.py ``AsyncPool``): bounded
answers, pinned peers, and whether a failed request may be tried on another server."""
from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading

import pytest
from cheroot import wsgi

from tests.fixtures.pki import free_port
from tests.server.edges.upstream_servers import (  # noqa: F401, F811 (fixtures, by name)
    EarlyAnswerServer, ScriptedServer, big_answer_server, tls_files, tls_material,
    tls_server)
from tunduk.server.edges.aio.upstream import AsyncPool, _Upstream
from tunduk.server.edges.http_wire import TransportError, pin_to


class _Loop:
    """An event loop running in a thread; the test thread hands it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pools: list[AsyncPool] = []

    def start(self, coro):
        """Schedule ``coro`` on the loop; a concurrent.futures.Future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float = 60):
        return self.start(coro).result(timeout)

    def call(self, fn, *args):
        """Run a plain function on the loop (transports belong to its thread)."""
        async def call():
            return fn(*args)
        return self.run(call())

    def pool(self, port: int, **kw) -> AsyncPool:
        """An AsyncPool to 127.0.0.1:``port``, closed when the test ends."""
        pool = AsyncPool("127.0.0.1", port, **kw)
        self.pools.append(pool)
        return pool

    def stop(self) -> None:
        for pool in self.pools:
            self.call(pool.close)
        self.run(asyncio.sleep(0.05))      # let the closed transports finish
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def aio():
    loop = _Loop()
    yield loop
    loop.stop()


def test_answer_larger_than_the_limit_is_refused(aio, big_answer_server):
    pool = aio.pool(big_answer_server, max_response_bytes=1000)
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"<q/>", {"Content-Type": "text/xml"}))
    assert "larger than 1000 bytes" in str(ei.value)
    assert ei.value.sent  # the request did reach the server
    ok = aio.run(aio.pool(big_answer_server).post("/", b"<q/>",
                                                  {"Content-Type": "text/xml"}))
    assert ok.status == 200 and len(ok.body) == 5007


def test_connect_failure_is_marked_not_sent(aio):
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(free_port(), timeout=5).post("/", b"<q/>", {}))
    assert ei.value.sent is False
    assert "refused" in str(ei.value)


def test_chunked_answer_is_decoded_and_connection_reused(aio):
    srv = ScriptedServer([[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    ]])
    pool = aio.pool(srv.port)
    first = aio.run(pool.post("/p?x=1", b"<q/>", {"Content-Type": "text/xml"}))
    assert (first.status, first.body, first.headers["x-a"]) == (200, b"abcde", "1")
    # AsyncPool has no get(): request("GET", ...) is what it stands for
    second = aio.run(pool.request("GET", "/wsdl", None, {}))
    assert (second.status, second.body) == (201, b"ok")
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"POST /p?x=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 4\r\n" in srv.requests[0]
    assert srv.requests[0].endswith(b"\r\n\r\n<q/>")
    assert srv.requests[1].startswith(b"GET /wsdl HTTP/1.1\r\n")
    srv.close()


def test_a_request_timer_ends_with_its_answer(aio):
    """The timeout is a timer per request: once the answer is in, it must not fire on
    the kept connection (which would abort it while idle)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = ScriptedServer([[ok, ok]])
    pool = aio.pool(srv.port, timeout=0.2)
    assert aio.run(pool.post("/", b"<q/>", {})).body == b"ok"
    aio.run(asyncio.sleep(0.4))               # twice the timeout, idle
    assert aio.run(pool.post("/", b"<q/>", {})).body == b"ok"
    assert srv.connections == 1
    srv.close()


def test_answer_delimited_by_close_is_read_to_the_end(aio):
    srv = ScriptedServer([[b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<a/>"]])
    answer = aio.run(aio.pool(srv.port).post("/", b"<q/>", {}))
    assert (answer.status, answer.body) == (200, b"<a/>")
    srv.close()


def test_connection_closed_while_idle_is_not_used_again(aio):
    # The first connection answers once and is then closed by the server while
    # idle in the pool; the next request goes out on a fresh connection.
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"],
    ])
    pool = aio.pool(srv.port)
    assert aio.run(pool.post("/", b"a", {})).body == b"1"
    assert srv.closed.acquire(timeout=10)    # closed while idle, before the next request
    assert aio.run(pool.post("/", b"b", {})).body == b"2"
    assert srv.connections == 2
    assert [r[-1:] for r in srv.requests] == [b"a", b"b"]
    srv.close()


def test_connection_closed_in_mid_answer_is_a_sent_transport_error(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"<q/>", {}))
    assert "closed the connection in mid-answer" in str(ei.value)
    assert ei.value.sent
    srv.close()


def test_fresh_connection_closed_without_answer_is_a_sent_transport_error(aio):
    srv = ScriptedServer([[b""]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"<q/>", {}))
    assert "closed the connection without answering" in str(ei.value)
    assert ei.value.sent and srv.connections == 1
    srv.close()


def test_garbage_answer_is_an_invalid_http_answer(aio):
    srv = ScriptedServer([[b"SMTP ready\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"<q/>", {}))
    assert "invalid HTTP answer" in str(ei.value)
    srv.close()


def test_streamed_answer_over_the_limit_is_refused(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port, max_response_bytes=1000).post("/", b"<q/>", {}))
    assert "larger than 1000 bytes" in str(ei.value)
    srv.close()


@pytest.mark.parametrize("path, headers", [
    ("/", {"SOAPAction": "a\r\nX-Evil: 1"}),
    ("/a HTTP/1.1\r\nX-Smuggled: yes\r\nFoo: bar", {}),
    ("/a b", {}),
    ("/", {"Bad Name": "x"}),
    ("/", {"SOAPAction": "caf\u00e9\u20ac"}),
])
def test_request_line_or_header_that_would_smuggle_is_refused_before_connecting(
        aio, path, headers):
    srv = ScriptedServer([])
    with pytest.raises(ValueError):
        aio.run(aio.pool(srv.port).post(path, b"<q/>", headers))
    assert srv.connections == 0
    srv.close()


def test_interim_1xx_answers_are_skipped_and_do_not_desynchronise_the_connection(aio):
    srv = ScriptedServer([[
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2",
    ]])
    pool = aio.pool(srv.port)
    first = aio.run(pool.post("/", b"a", {}))
    assert (first.status, first.body, first.headers) == (200, b"r1", {"content-length": "2"})
    assert aio.run(pool.post("/", b"b", {})).body == b"r2"
    assert srv.connections == 1
    srv.close()


def test_bytes_after_a_complete_answer_are_not_merged_and_the_connection_is_dropped(aio):
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
         b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nevil!"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"],
    ])
    pool = aio.pool(srv.port)
    first = aio.run(pool.post("/", b"a", {}))
    assert (first.body, first.headers) == (b"ok", {"content-length": "2"})
    assert aio.run(pool.post("/", b"b", {})).body == b"clean"
    assert srv.connections == 2
    srv.close()


def test_trailer_fields_do_not_change_the_headers(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                           b"Content-Type: text/html\r\n\r\n"]])
    answer = aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert (answer.body, answer.headers["content-type"]) == (b"ok", "text/xml")
    srv.close()


def test_endless_trailer_is_refused_with_bounded_memory(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\nok\r\n0\r\nX-T: " + b"a" * (1 << 20)]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert "chunk framing or trailer fields are too large" in str(ei.value)
    srv.close()


def test_data_after_a_connection_close_answer_keeps_the_answer(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n"
                           b"\r\nokJUNK"]])
    answer = aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert (answer.status, answer.body) == (200, b"ok")
    srv.close()


def test_endless_headers_are_refused_with_bounded_memory(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20)
                           + b"\r\nContent-Length: 0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert "headers exceed 65536 bytes" in str(ei.value)
    srv.close()


def test_too_many_header_fields_are_refused(aio):
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101
                           + b"Content-Length: 0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert "more than 100 header fields" in str(ei.value)
    srv.close()


def test_protocol_switch_is_a_transport_error(aio):
    srv = ScriptedServer([[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                           b"Connection: Upgrade\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port).post("/", b"a", {}))
    assert "switched protocols" in str(ei.value)
    srv.close()


def test_request_is_never_sent_twice_when_the_server_closes_after_reading_it(aio):
    # A pooled connection; the server reads the second request (it may have acted on
    # it) and closes without answering: the pool must not send it again elsewhere.
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", b""],
                          [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"]])
    pool = aio.pool(srv.port)
    assert aio.run(pool.post("/", b"a", {})).body == b"1"
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"payment-2", {}))
    assert ei.value.sent
    assert "closed the connection without answering" in str(ei.value)
    assert [r.endswith(b"payment-2") for r in srv.requests] == [False, True]
    assert srv.connections == 1
    srv.close()


@pytest.mark.parametrize("pooled", [False, True])
def test_large_request_read_whole_then_closed_without_answer_is_sent_once(aio, pooled):
    # As above, with a request too large to leave in one write: the server reads all
    # of it before closing, so it may have acted on it (blocking Pool: the send
    # completes, the read sees the end).  Not sent=False, and not sent again.
    big = b"payment-2" + b"x" * (8 * 1024 * 1024)
    first = [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"] if pooled else []
    srv = ScriptedServer([first + [b""], [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"]])
    pool = aio.pool(srv.port)
    if pooled:
        assert aio.run(pool.post("/", b"a", {})).body == b"1"
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", big, {}))
    assert ei.value.sent
    assert "closed the connection without answering" in str(ei.value)
    assert [r.endswith(big) for r in srv.requests] == [False] * pooled + [True]
    assert srv.connections == 1
    srv.close()


# ------------------------------------------------------------------------ TLS

def test_peer_certificate_pin_mismatch_sends_no_request_byte(aio, tls_material):
    server_ctx, client_ctx, _der = tls_material
    port, got, t = tls_server(server_ctx, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                               clean_close=True)
    pool = aio.pool(port, ssl_context=client_ctx,
                    verify_peer=pin_to(frozenset({"00" * 32})))
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"secret request", {}))
    t.join(5)
    assert not ei.value.sent
    assert "is not registered" in str(ei.value)
    assert got in ([], [b""])          # not one byte of the request arrived


def test_pinned_peer_answers_over_tls(aio, tls_material):
    server_ctx, client_ctx, der = tls_material
    port, got, t = tls_server(server_ctx,
                               b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<a/>",
                               clean_close=True)
    pool = aio.pool(port, ssl_context=client_ctx,
                    verify_peer=pin_to(frozenset({hashlib.sha256(der).hexdigest()})))
    answer = aio.run(pool.post("/", b"<q/>", {}))
    aio.call(pool.close)
    t.join(5)
    assert (answer.status, answer.body, answer.peer_cert_der) == (200, b"<a/>", der)


def test_close_delimited_answer_cut_by_a_bare_fin_over_tls_is_refused(aio, tls_material):
    server_ctx, client_ctx, _der = tls_material
    port, _got, t = tls_server(
        server_ctx, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<Body><amount>100",
        clean_close=False)
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(port, ssl_context=client_ctx).post("/", b"<q/>", {}))
    t.join(5)
    assert "closed the connection in mid-answer" in str(ei.value)


def test_close_delimited_answer_with_tls_close_notify_is_complete(aio, tls_material):
    server_ctx, client_ctx, _der = tls_material
    port, _got, t = tls_server(
        server_ctx, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<Body/>",
        clean_close=True)
    answer = aio.run(aio.pool(port, ssl_context=client_ctx).post("/", b"<q/>", {}))
    t.join(5)
    assert (answer.status, answer.body) == (200, b"<Body/>")


def test_tls_connection_is_kept_alive_and_reused(aio, tls_material):
    server_ctx, client_ctx, _der = tls_material
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def run() -> None:
        raw, _ = listener.accept()
        accepted.append(1)
        tls = server_ctx.wrap_socket(raw, server_side=True)
        tls.settimeout(5)
        try:
            for i in range(3):
                data = b""
                while not data.endswith(b"<q/>"):
                    data += tls.recv(65536)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % i)
            tls.unwrap()
        except OSError:
            pass
        finally:
            raw.close()
            listener.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    pool = aio.pool(listener.getsockname()[1], ssl_context=client_ctx)
    bodies = [aio.run(pool.post("/", b"<q/>", {})).body for _ in range(3)]
    aio.call(pool.close)
    t.join(5)
    assert bodies == [b"0", b"1", b"2"] and accepted == [1]


# ------------------------------------------------------- answers before the body

def test_answer_sent_before_the_body_was_read_is_returned_not_a_reset(aio):
    # As a server proxy does for a body over its limit (HTTP 413, then close): the
    # caller must get that answer, not "closed before the request was sent".
    # (no "Connection: close": the connection would be kept but for the failed send)
    srv = EarlyAnswerServer(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/xml\r\n"
                            b"Content-Length: 9\r\n\r\n<toobig/>")
    pool = aio.pool(srv.port, timeout=30)
    answer = aio.run(pool.post("/", b"x" * (32 * 1024 * 1024),
                               {"Content-Type": "text/xml"}))
    assert (answer.status, answer.body) == (413, b"<toobig/>")
    assert pool._idle == []            # a connection whose send failed is not reused
    srv.close()


def test_close_delimited_answer_cut_by_the_reset_is_not_taken_for_whole(aio):
    # The kernel drops what of the answer had not arrived when the reset came; the
    # read after the failed send then sees an end, which is not the answer's end.
    srv = EarlyAnswerServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<r>"
                            + b"y" * (2 * 1024 * 1024) + b"</r>")
    try:
        answer = aio.run(aio.pool(srv.port, timeout=30).post(
            "/", b"x" * (32 * 1024 * 1024), {}))
    except TransportError as exc:
        assert exc.sent and "mid-answer" in str(exc)
    else:   # the whole answer arrived before the reset: then it must be complete
        assert answer.body.endswith(b"</r>"), len(answer.body)
    srv.close()


def test_reset_without_an_answer_is_still_not_sent(aio):
    srv = EarlyAnswerServer(b"")
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(srv.port, timeout=30).post("/", b"x" * (32 * 1024 * 1024), {}))
    assert ei.value.sent is False
    assert "closed the connection before the request was sent" in str(ei.value)
    srv.close()


def test_connection_busy_when_the_pool_closes_is_closed_after_its_answer(aio):
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        entered.set()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=2)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        pool = aio.pool(port, timeout=10)
        busy = aio.start(pool.post("/", b"b", {}))
        assert entered.wait(10)
        aio.call(pool.close)               # the busy connection is not idle yet
        release.set()
        assert busy.result(10).body == b"ok"
        assert pool._idle == []            # closed on return instead of kept
        assert aio.run(pool.post("/", b"c", {})).body == b"ok"   # usable, not kept
        assert pool._idle == []
    finally:
        release.set()
        server.stop()


@pytest.mark.parametrize("tls13", [True, False])
def test_a_refused_client_certificate_means_the_request_was_not_handled(
        aio, tls_files, tls_material, tls13):
    """With TLS 1.3 the refusal arrives after our side of the handshake is done, with
    the first read: the request was written but the server never handled it, so
    another server of the provider may be tried (sent=False)."""
    cert_path, key_path, der = tls_files
    _server_ctx, client_ctx, _der = tls_material
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    strict.load_cert_chain(cert_path, key_path)
    strict.verify_mode = ssl.CERT_REQUIRED               # and the client has none
    strict.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    if not tls13:
        strict.maximum_version = ssl.TLSVersion.TLSv1_2
    port, got, t = tls_server(strict, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                               clean_close=True)
    with pytest.raises(TransportError) as ei:
        aio.run(aio.pool(port, ssl_context=client_ctx, timeout=5).post("/", b"<q/>", {}))
    t.join(5)
    assert ei.value.sent is False
    assert got == []                                     # the server handled nothing
    # TLS 1.2: the handshake itself fails, before anything is written
    assert ("refused this server's TLS certificate (TLSV13_ALERT_CERTIFICATE_REQUIRED)"
            if tls13 else "TLS failure") in str(ei.value), str(ei.value)


class _AlertAfterRequest:
    """A transport standing for a pooled TLS connection whose server, after reading
    our request, sends a certificate alert (TLS 1.2 renegotiation or TLS 1.3
    post-handshake authentication gone wrong): the request may have been handled.
    (The blocking test fakes the socket; here the transport is faked instead.)"""

    def __init__(self, protocol: _Upstream) -> None:
        self.protocol = protocol
        self.sent = b""
        self.closing = False
        listener = socket.create_server(("127.0.0.1", 0))   # a TCP socket for
        self._a = socket.create_connection(listener.getsockname())   # TCP_NODELAY
        self._b = listener.accept()[0]
        listener.close()

    def get_extra_info(self, name: str, default=None):
        return self._a if name == "socket" else default

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0                              # each write goes out at once

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data) -> None:
        self.sent += bytes(data)
        exc = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
        exc.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, exc)

    def close(self) -> None:
        self.closing = True
        self._a.close()
        self._b.close()


def test_a_certificate_alert_on_a_used_connection_may_follow_a_handled_request(aio):
    pool = aio.pool(free_port(), timeout=5)
    conn = _Upstream()
    transport = _AlertAfterRequest(conn)

    def pool_it() -> None:                 # a connection used before
        conn.connection_made(transport)
        conn.peer_cert_der = b"cert"
        conn.born = asyncio.get_running_loop().time()
        pool._idle.append(conn)
    aio.call(pool_it)
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"<q/>", {}))
    assert transport.sent.startswith(b"POST / HTTP/1.1")  # the request went out
    assert ei.value.sent is True                          # so no other server may get it


def test_connection_closed_while_the_loop_was_busy_is_not_used_again(aio):
    # The server closes the idle connection while the loop is busy with other work
    # (core steps run on it), so the loop has not yet seen the close when the next
    # request checks a connection out: it must not go out on that one.
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"],
    ])
    pool = aio.pool(srv.port)

    async def two():
        first = await pool.post("/", b"a", {})
        assert srv.closed.acquire(timeout=10)      # blocks the loop thread meanwhile
        second = await pool.post("/", b"b", {})
        return first.body, second.body
    assert aio.run(two()) == (b"1", b"2")
    assert srv.connections == 2
    srv.close()


def test_a_timed_out_request_is_dropped_not_left_sending(aio):
    """A peer that accepts but never reads: after the timeout our side of the
    connection is gone at once (the threaded pool closes its socket too), not kept
    open until the peer has read 20 MB."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list = []

    def accept():
        conn, _ = listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        accepted.append(conn)
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    pool = aio.pool(listener.getsockname()[1], timeout=1)
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"x" * (20 * 1024 * 1024), {}))
    assert str(ei.value) == "timed out" and ei.value.sent
    t.join(5)
    peer = accepted[0]
    peer.settimeout(5)
    got = 0
    try:
        while chunk := peer.recv(1 << 20):     # what was in flight, then the end
            got += len(chunk)
    except ConnectionResetError:
        pass
    assert got < 20 * 1024 * 1024
    peer.close()
    listener.close()


def test_at_most_max_connections_carry_requests_at_once(aio):
    import time
    lock = threading.Lock()
    now, most = [0], [0]

    def slow(environ, start_response):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.2)
        with lock:
            now[0] -= 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), slow, numthreads=10)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    pool = aio.pool(port, max_connections=2)

    async def six():
        return await asyncio.gather(*(pool.post("/", b"a", {}) for _ in range(6)))
    try:
        answers = aio.run(six())
    finally:
        server.stop()
    assert [a.body for a in answers] == [b"ok"] * 6
    assert most[0] == 2


def test_waiting_for_a_free_connection_is_bounded_by_the_timeout(aio):
    pool = aio.pool(free_port(), max_connections=1, timeout=0.3)
    aio.run(pool._slots.acquire())          # the one connection is busy (held here)
    with pytest.raises(TransportError) as ei:
        aio.run(pool.post("/", b"a", {}))
    assert not ei.value.sent
    assert str(ei.value) == ("no connection to the server became free within 0.3 s "
                             "(at most 1 at once)")


def test_kept_connections_are_recycled_after_max_requests_and_max_age(aio):
    """Peer connections kept for ever held a consumer on the node that survived a
    restart of its sibling behind a balancer: they end after ``max_requests`` or
    ``max_age`` seconds, so new ones spread again."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = ScriptedServer([[ok, ok], [ok]])
    pool = aio.pool(srv.port, max_requests=2)
    for _ in range(3):
        assert aio.run(pool.post("/", b"<q/>", {})).status == 200
    assert srv.connections == 2
    srv.close()
    srv = ScriptedServer([[ok], [ok]])
    pool = aio.pool(srv.port, max_age=0.0)
    for _ in range(2):
        assert aio.run(pool.post("/", b"<q/>", {})).status == 200
    assert srv.connections == 2
    srv.close()
