"""The event-loop engine's HTTP/1.1 server side (edges/aio/http_server.py) over real
sockets: framing, pipelining, limits, and the malformed requests it refuses."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from tests.http_helpers import read_answers as _read_answers
from tunduk.server.core.errors import Origin
from tunduk.server.edges.aio.http_server import (MAX_HEAD_BYTES, Answer, Connections,
                                                 HttpConnection, Request)
from tunduk.server.edges.aio.proxies import fault
from tunduk.server.edges.answers import too_large

MB = 1 << 20


class Echo:
    """Answers "<path>|<body>"; refuses too large bodies as the proxies do."""

    def __init__(self, max_bytes: int = MB, delay: float = 0.0) -> None:
        self.max_bytes, self.delay = max_bytes, delay
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Answer:
        self.seen.append(request)
        if request.too_large:
            return fault(too_large(request.too_large), Origin.CLIENT_PROXY)
        if self.delay:
            await asyncio.sleep(self.delay)
        return Answer(200, [("Content-Type", "text/plain")],
                      request.path.encode("latin-1") + b"|" + request.body)


@pytest.fixture
def serve_with():
    """``serve_with(handler, connections, idle_timeout=...)`` → port of an
    HttpConnection server on a loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = []

    def start(handler, conns: Connections, **kw) -> int:
        async def make():
            return await loop.create_server(
                lambda: HttpConnection(handler, server_name="test", connections=conns,
                                       **kw), "127.0.0.1", 0)
        server = asyncio.run_coroutine_threadsafe(make(), loop).result()
        servers.append(server)
        return server.sockets[0].getsockname()[1]
    yield start
    for s in servers:
        loop.call_soon_threadsafe(s.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def serve(serve_with):
    """``serve(handler, idle_timeout=...)`` → port."""
    return lambda handler, **kw: serve_with(handler, Connections(), **kw)


def _answer_to(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Everything the server sends until it closes (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(data)
        if then:
            try:
                s.sendall(then)
            except OSError:
                pass
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
    return out


def test_body_split_across_packets_is_read_whole(serve):
    port = serve(Echo())
    body = b"<q>" + b"x" * 20000 + b"</q>"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                "\r\n").encode()
        for piece in (head[:7], head[7:], body[:100], body[100:9000], body[9000:]):
            s.sendall(piece)
            time.sleep(0.01)
        assert _read_answers(s, 1) == [(200, b"/a|" + body)]


def test_pipelined_requests_are_answered_in_order_one_at_a_time(serve):
    echo = Echo(delay=0.02)          # the first is still being handled as the rest come
    port = serve(echo)
    reqs = b"".join(f"POST /{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{i}".encode()
                    for i in range(3))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(reqs)
        assert _read_answers(s, 3) == [(200, b"/0|0"), (200, b"/1|1"), (200, b"/2|2")]


def test_absolute_form_target_reaches_the_handler_with_its_path(serve):
    echo = Echo()
    port = serve(echo)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://127.0.0.1:1/cgi/x?wsdl HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
                  b"Content-Length: 2\r\n\r\nhi")
        assert _read_answers(s, 1) == [(200, b"/cgi/x|hi")]
    assert echo.seen[0].query == "wsdl"


def test_repeated_header_fields_are_joined_and_names_lower_cased(serve):
    echo = Echo()
    port = serve(echo)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nACCEPT: b\r\n"
                  b"SOAPAction: \"urn:x\"\r\nContent-Length: 0\r\n\r\n")
        _read_answers(s, 1)
    assert echo.seen[0].headers["accept"] == "a, b"
    assert echo.seen[0].headers["soapaction"] == '"urn:x"'


def test_chunked_body_within_the_limit_is_read_whole(serve):
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n/|abcde")
    assert b"\r\nConnection: close\r\n" in answer


def test_http_1_0_without_keep_alive_is_closed_after_the_answer(serve):
    answer = _answer_to(serve(Echo()), b"POST /x HTTP/1.0\r\nContent-Length: 1\r\n\r\nz")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/x|z")
    assert b"\r\nConnection: close\r\n" in answer


def test_expect_100_continue_is_answered_before_the_body_is_sent(serve):
    port = serve(Echo())
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 3\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        assert _read_answers(s, 1) == [(200, b"/e|abc")]


def test_announced_oversized_body_is_refused_before_it_is_sent(serve):
    echo = Echo()
    answer = _answer_to(serve(echo), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml"
                        b"\r\nContent-Length: %d\r\n\r\n" % (48 * MB))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"<faultcode>Client.MessageTooLarge</faultcode>" in answer
    assert b"\r\nConnection: close\r\n" in answer
    assert echo.seen[0].body == b""


def test_huge_chunk_is_refused_before_it_is_sent(serve):
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n%x\r\n" % (48 * MB), b"a" * (2 * MB))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Client.MessageTooLarge" in answer


def test_chunked_body_over_the_limit_in_small_chunks_is_refused(serve):
    chunks = (b"%x\r\n" % (256 * 1024) + b"a" * (256 * 1024) + b"\r\n") * 5 + b"0\r\n\r\n"
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n", chunks)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Client.MessageTooLarge" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_chunked_body_at_the_limit_in_small_chunks_is_accepted(serve):
    body_chunks = (b"a\r\n" + b"b" * 10 + b"\r\n") * (MB // 10) + b"0\r\n\r\n"
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n", body_chunks)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(answer.split(b"\r\n\r\n", 1)[1]) == len(b"/|") + MB // 10 * 10


def test_request_after_a_malformed_chunk_is_not_parsed(serve):
    # A malformed chunk size ("zz") ends the request; what follows must not be taken
    # for a second request on the same connection (request smuggling).
    echo = Echo()
    smuggled = b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    answer = _answer_to(serve(echo), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\nzz\r\n" + smuggled)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1
    assert echo.seen == []


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n",                 # bare LF
    b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",               # obs-fold
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",           # WS : 
    b"POST / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",                           # bare CR
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n",
])
def test_malformed_or_ambiguous_requests_are_refused_and_not_handled(serve, head):
    echo = Echo()
    answer = _answer_to(serve(echo), head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"\r\nConnection: close\r\n" in answer
    assert echo.seen == []


def test_header_block_over_the_limit_is_refused(serve):
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEAD_BYTES // 100))
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_endless_header_line_is_refused_not_buffered(serve):
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: "
                        + b"a" * (200 * 1024))
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_too_many_header_fields_are_refused(serve):
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    answer = _answer_to(serve(Echo()), b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_header_block_arriving_a_byte_at_a_time_is_read(serve):
    port = serve(Echo())
    request = b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-B: 1\r\n\r\nok"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            s.sendall(request[i:i + 1])
            time.sleep(0.001)
        assert _read_answers(s, 1) == [(200, b"/h|ok")]


def test_an_idle_connection_is_closed_after_the_idle_timeout(serve):
    port = serve(Echo(), idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        _read_answers(s, 1)
        started = time.monotonic()
        assert s.recv(10) == b""                    # closed by the server
        assert time.monotonic() - started < 4


def test_each_request_restarts_the_idle_time(serve):
    """Requests 0.15 s apart keep a connection with a 0.3 s idle timeout open well past
    0.3 s; after the last one it is closed."""
    port = serve(Echo(), idle_timeout=0.3)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        for i in range(6):
            s.sendall(f"POST /{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                      .encode())
            assert _read_answers(s, 1) == [(200, f"/{i}|".encode())]
            time.sleep(0.15)
        started = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - started < 4


def test_a_connection_is_not_closed_while_its_request_is_handled(serve):
    port = serve(Echo(delay=0.5), idle_timeout=0.1)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert _read_answers(s, 1) == [(200, b"/slow|")]


def test_a_failing_handler_gets_a_500_and_the_connection_closed(serve):
    async def broken(request):
        raise RuntimeError("bug")
    broken.max_bytes = MB
    answer = _answer_to(serve(broken), b"POST / HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ") and b"bug" not in answer


# -- found by review: bounded buffers, half-close, back-pressure ----------------------

def test_endless_trailer_field_is_refused_with_bounded_reading(serve):
    echo = Echo()
    port = serve(echo)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1\r\na\r\n0\r\nX-Trailer: ")
        sent = 0
        with pytest.raises(OSError):         # refused and closed long before 64 MB
            while sent < 64 * MB:
                s.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 4 * MB
    assert echo.seen == []


def test_endless_chunk_extension_is_refused(serve):
    port = serve(Echo())
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;x=")
        sent = 0
        with pytest.raises(OSError):
            while sent < 64 * MB:
                s.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 4 * MB


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(serve):
    port = serve(Echo(delay=0.1))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/x|hi")
    assert b"\r\nConnection: close\r\n" in answer


def test_pipelined_requests_beyond_the_limit_are_not_read(serve):
    from tunduk.server.edges.aio.http_server import MAX_PIPELINED
    echo = Echo()
    port = serve(echo)
    reqs = b"".join(b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % i
                    for i in range(MAX_PIPELINED * 4))
    answer = _answer_to(port, reqs)
    # the one in progress and MAX_PIPELINED waiting are answered, then the end
    assert answer.count(b"HTTP/1.1 200 ") == MAX_PIPELINED + 1
    assert answer.count(b"\r\nConnection: close\r\n") == 1    # on the last one
    assert [r.path for r in echo.seen] == [f"/{i}" for i in range(MAX_PIPELINED + 1)]


def test_a_client_that_does_not_read_its_answers_is_not_buffered_for(serve):
    """Big answers to pipelined requests: the server stops taking requests while
    the client reads nothing (write back-pressure), and drops it after the idle time."""
    class Big(Echo):
        async def __call__(self, request):
            self.seen.append(request)
            return Answer(200, [("Content-Type", "text/plain")], b"x" * MB)
    big = Big()
    port = serve(big, idle_timeout=0.5)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" * 200)
        time.sleep(2)
        assert len(big.seen) < 20          # not 200 answers of 1 MB held in memory
        s.settimeout(5)
        got = 0
        try:
            while chunk := s.recv(1 << 20):
                got += len(chunk)
        except ConnectionResetError:
            pass
        assert got < 40 * MB                # the connection was dropped


def test_100_continue_waits_for_the_answers_before_it(serve):
    port = serve(Echo(delay=0.3))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
                  b"POST /second HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 6\r\n\r\n")
        head = b""
        while b"/first|1" not in head:
            head += s.recv(65536)
        assert not head.startswith(b"HTTP/1.1 100")
        rest = head.split(b"/first|1", 1)[1]
        while len(rest) < 25:
            rest += s.recv(65536)
        assert rest.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"second")
        answers = _read_answers(s, 1) if b"/second|" not in rest else None
        assert answers in (None, [(200, b"/second|second")])


def test_a_pipelined_head_split_after_a_large_body_is_read(serve):
    echo = Echo()
    port = serve(echo)
    body = b"b" * (200 * 1024)
    first = b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(first + second[:10])
        time.sleep(0.2)
        s.sendall(second[10:])
        assert [a[0] for a in _read_answers(s, 2)] == [200, 200]
    assert [r.path for r in echo.seen] == ["/1", "/2"]


def test_stopping_closes_connections_after_their_answer(serve):
    from tunduk.server.edges.aio import http_server
    conns: list = []
    orig = http_server.HttpConnection.connection_made

    def spy(self, transport):
        orig(self, transport)
        conns.append(self)
    http_server.HttpConnection.connection_made = spy
    try:
        port = serve(Echo(delay=0.3))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(5)
            s.sendall(b"POST /r1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.1)
            conns[0].loop.call_soon_threadsafe(conns[0].connections.idle_close)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    finally:
        http_server.HttpConnection.connection_made = orig
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/r1|")
    assert b"\r\nConnection: close\r\n" in answer


# -- found by the second review: differences from cheroot a client would notice ------

def test_an_encoded_slash_in_the_path_stays_encoded(serve):
    echo = Echo()
    port = serve(echo)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /xsd%2Fxroad.xsd/a%20b HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_answers(s, 1)
    assert echo.seen[0].path == "/xsd%2Fxroad.xsd/a b"


def test_a_malformed_request_after_a_good_one_gets_its_400_after_that_answer(serve):
    echo = Echo(delay=0.1)
    answer = _answer_to(serve(echo), b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0"
                        b"\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n")
    first, _, second = answer.partition(b"/1|")
    assert first.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in first
    assert second.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close\r\n" in second
    assert [r.path for r in echo.seen] == ["/1"]


def test_http_1_0_keep_alive_is_not_kept(serve):
    answer = _answer_to(serve(Echo()), b"POST /x HTTP/1.0\r\nConnection: keep-alive\r\n"
                        b"Content-Length: 1\r\n\r\nz")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in answer


# -- the budget of request body bytes held at once ----------------------------------

@pytest.fixture
def serve_budget(serve_with):
    """``serve_budget(handler, budget)`` → (port, the server's Connections)."""
    def start(handler, budget: int):
        conns = Connections(body_budget=budget)
        return serve_with(handler, conns), conns
    return start


def test_bodies_over_the_budget_wait_unread_until_earlier_ones_are_answered(serve_budget):
    echo = Echo(delay=0.5)
    port, conns = serve_budget(echo, budget=100_000)
    body = b"b" * 80_000
    request_ = b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 80000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as first, \
            socket.create_connection(("127.0.0.1", port)) as second:
        first.sendall(request_ % 1 + body)
        time.sleep(0.2)                       # /1 holds 80 KB of the 100 KB budget
        second.sendall(request_ % 2)
        time.sleep(0.1)
        assert [r.path for r in echo.seen] == ["/1"]
        assert conns.reserved == 80_000 and len(conns.waiting) == 1
        second.sendall(body)                   # not read before /1 is answered
        assert _read_answers(first, 1) == [(200, b"/1|" + body)]
        assert _read_answers(second, 1) == [(200, b"/2|" + body)]
    assert [r.path for r in echo.seen] == ["/1", "/2"]
    time.sleep(0.1)
    assert conns.reserved == 0 and not conns.waiting


def test_a_closed_connection_gives_its_budget_back(serve_budget):
    port, conns = serve_budget(Echo(), budget=100_000)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n")
        time.sleep(0.1)
        assert conns.reserved == MB           # chunked: the body limit is reserved
    time.sleep(0.2)
    assert conns.reserved == 0


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_HEAD = b"POST /%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_chunked_body_reserves_as_it_arrives(serve_with):
    conns = Connections(body_budget=10 * MB, chunked_step=64 * 1024)
    port = serve_with(Echo(), conns)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(CHUNKED_HEAD % 1 + _chunk(b"a" * 10_000))
        time.sleep(0.1)
        assert conns.reserved == 64 * 1024          # not the 1 MB body limit
        s.sendall(_chunk(b"b" * 200_000))
        time.sleep(0.1)
        assert conns.reserved == 256 * 1024         # 64 → 128 → 256 KB
        s.sendall(b"0\r\n\r\n")
        assert _read_answers(s, 1) == [(200, b"/1|" + b"a" * 10_000 + b"b" * 200_000)]
    time.sleep(0.1)
    assert (conns.reserved, conns.overdraft) == (0, None)


def test_a_chunked_body_of_any_method_is_counted(serve_with):
    conns = Connections(body_budget=10 * MB, chunked_step=64 * 1024)
    port = serve_with(Echo(), conns)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + _chunk(b"g" * 100_000))
        time.sleep(0.1)
        assert conns.reserved == 128 * 1024
        s.sendall(b"0\r\n\r\n")
        assert _read_answers(s, 1) == [(200, b"/g|" + b"g" * 100_000)]
    time.sleep(0.1)
    assert conns.reserved == 0


def test_slow_chunked_uploads_do_not_hold_the_budget(serve_with):
    """Three clients trickling chunked bodies hold 64 KB each, so an 800 KB request
    in a 1 MB budget is read at once (each used to reserve the whole body limit)."""
    conns = Connections(body_budget=MB, chunked_step=64 * 1024)
    port = serve_with(Echo(), conns)
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        for i, s in enumerate(slow):
            s.sendall(CHUNKED_HEAD % i + _chunk(b"x" * 100))
        time.sleep(0.1)
        assert conns.reserved == 3 * 64 * 1024
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(5)
            body = b"b" * 800_000
            s.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 800000\r\n\r\n"
                      + body)
            assert _read_answers(s, 1) == [(200, b"/big|" + body)]
    finally:
        for s in slow:
            s.close()


def _upload_side_by_side(port: int, n: int, pieces: int, idle=None) -> list:
    """``n`` chunked uploads of ``pieces`` × 40 KB, fed at the same time; their answers."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    piece = _chunk(b"p" * 40_000)

    def feed(s, i):
        try:
            s.sendall(CHUNKED_HEAD % i)
            for _ in range(pieces):
                s.sendall(piece)
                time.sleep(0.005)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
    feeders = [threading.Thread(target=feed, args=(s, i)) for i, s in enumerate(socks)]
    try:
        for t in feeders:
            t.start()
        answers = []
        for s in socks:
            s.settimeout(10)
            answers += _read_answers(s, 1)
        return answers
    finally:
        for t in feeders:
            t.join(10)
        for s in socks:
            s.close()


def test_chunked_uploads_larger_than_the_budget_together_all_finish(serve_with):
    """Two 400 KB chunked bodies sent side by side into a 300 KB budget: one may
    overdraw, finishes, is answered, and the other then goes on (without the
    overdraft each would wait for the other until the body timeout)."""
    conns = Connections(body_budget=300_000, chunked_step=64 * 1024)
    port = serve_with(Echo(), conns)
    answers = _upload_side_by_side(port, 2, 10)
    assert answers == [(200, b"/%d|" % i + b"p" * 400_000) for i in range(2)]
    time.sleep(0.1)
    assert (conns.reserved, len(conns.waiting), conns.overdraft) == (0, 0, None)


def test_only_one_body_overdraws_the_budget_at_a_time(serve_with):
    """Five 400 KB uploads into a 300 KB budget with a slow handler: the budget is
    exceeded by at most one body (the overdraft lasts until that body is answered)."""
    conns = Connections(body_budget=300_000, chunked_step=64 * 1024)
    port = serve_with(Echo(delay=0.5), conns)
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], conns.reserved)
            time.sleep(0.002)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = _upload_side_by_side(port, 5, 10)
    finally:
        done.set()
        watcher.join()
    assert [a[0] for a in answers] == [200] * 5
    # within the budget, plus one body (up to its doubled reservation: 512 KB)
    assert peak[0] <= 300_000 + 512 * 1024, peak[0]


def test_a_silent_chunked_upload_does_not_stall_the_others(serve_with):
    """A client that began a chunked body and went quiet holds 64 KB and no
    privilege: two active uploads larger than what is left finish at once."""
    conns = Connections(body_budget=300_000, chunked_step=64 * 1024)
    port = serve_with(Echo(), conns, body_timeout=20)
    with socket.create_connection(("127.0.0.1", port)) as quiet:
        quiet.sendall(CHUNKED_HEAD % 9 + _chunk(b"q" * 100))
        time.sleep(0.1)
        started = time.monotonic()
        answers = _upload_side_by_side(port, 2, 8)
        assert [a[0] for a in answers] == [200, 200]
        assert time.monotonic() - started < 5          # not the quiet one's 20 s


def test_budget_is_all_given_back_when_heads_and_bodies_come_in_one_read(serve_budget):
    # A body that arrives in the same read as its head is parsed even when its
    # request had to wait for budget (pausing stops only later reads): it is then
    # counted as reserved, and everything returns to zero once all is answered.
    echo = Echo(delay=0.05)
    port, conns = serve_budget(echo, budget=30_000)
    one = b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"b" * 10_000
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        for s in socks:
            s.sendall(b"".join(one % i for i in range(5)))       # 5 pipelined, one write
        for s in socks:
            assert [a[0] for a in _read_answers(s, 5)] == [200] * 5
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    assert len(echo.seen) == 20
    assert (conns.reserved, len(conns.waiting), len(conns.open)) == (0, 0, 0)


def test_a_request_waiting_for_budget_is_not_dropped_as_idle(serve_budget):
    echo = Echo(delay=1.0)
    port, conns = serve_budget(echo, budget=100_000)
    body = b"b" * 80_000
    head = b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 80000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as first, \
            socket.create_connection(("127.0.0.1", port)) as second:
        first.sendall(head % 1 + body)
        time.sleep(0.2)
        for c in list(conns.open):
            c.idle_timeout = 0.3            # shorter than /1's handling
        second.sendall(head % 2)
        time.sleep(0.1)
        second.sendall(body)
        assert _read_answers(second, 1) == [(200, b"/2|" + body)]


def test_a_body_that_does_not_arrive_in_time_is_refused_and_its_budget_freed(serve_with):
    echo = Echo()
    conns = Connections(body_budget=100_000)
    port = serve_with(echo, conns, body_timeout=0.5)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n" + b"b" * 100)
        time.sleep(0.1)
        assert conns.reserved == 50_000
        started = time.monotonic()
        s.settimeout(0.2)
        answer = b""
        while time.monotonic() - started < 3:  # a byte now and then does not help
            try:
                s.sendall(b"b")
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"did not arrive within 0.5 s" in answer
    time.sleep(0.1)
    assert conns.reserved == 0 and echo.seen == []


# -- slow clients and connection caps ----------------------------------------------------
def test_a_head_trickled_byte_by_byte_gets_408_at_its_deadline(serve):
    """200 connections sending one header byte every 3 s stayed open: each byte
    restarted the idle clock and the head had no deadline."""
    port = serve(Echo(), head_timeout=0.5, idle_timeout=5)
    head = b"POST /a HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 1000
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        answer = b""
        for byte in head:          # the attack itself: a byte every 50 ms
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            s.settimeout(0.05)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        s.settimeout(5)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"head did not arrive within 0.5 s" in answer


def test_connections_over_the_per_peer_cap_are_refused_with_503(serve):
    from tunduk.server.edges.aio.admission import Admission
    port = serve(Echo(), admission=Admission(max_total=10, max_per_peer=2))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        for s in held:      # both admitted: they are served
            s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_answers(s, 1) == [(200, b"/k|")]
        refused = _answer_to(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert b"max_connections_per_peer" in refused
    finally:
        for s in held:
            s.close()
    # closed connections no longer count
    deadline = __import__("time").monotonic() + 5
    while True:
        again = _answer_to(port, b"GET /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if again.startswith(b"HTTP/1.1 200 ") or __import__("time").monotonic() > deadline:
            break
    assert again.startswith(b"HTTP/1.1 200 ")


def test_admission_counts_per_peer_and_in_total():
    from tunduk.server.edges.aio.admission import Admission
    a = Admission(max_total=3, max_per_peer=2)
    assert a.admit("10.0.0.1") is None and a.admit("10.0.0.1") is None
    assert "max_connections_per_peer" in a.admit("10.0.0.1")
    assert a.admit("10.0.0.2") is None
    assert "max_connections)" in a.admit("10.0.0.3")
    a.leave("10.0.0.1")
    assert a.admit("10.0.0.3") is None and a.total == 3


def test_crlf_between_requests_does_not_keep_a_connection_open(serve):
    """llhttp skips CRLFs before a request line without beginning a message: sent
    every now and then they restarted the idle clock, and the connection stayed."""
    port = serve(Echo(), idle_timeout=0.5, head_timeout=5)
    with socket.create_connection(("127.0.0.1", port)) as s:
        closed = False
        for _ in range(40):            # the attack: CRLF every 50 ms, for 2 s
            try:
                s.sendall(b"\r\n")
            except OSError:
                closed = True
                break
            s.settimeout(0.05)
            try:
                if s.recv(65536) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    assert closed
