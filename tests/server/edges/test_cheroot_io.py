"""cheroot with tunduk's socket files: bodies split across packets, pipelined
keep-alive requests, absolute-form targets, the head sent with the body."""
from __future__ import annotations

import socket
import threading
import time

import httptools
import pytest
from cheroot import wsgi

from tunduk.server.edges.cheroot_io import Connection, SocketWriter


def _echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = environ["PATH_INFO"].encode() + b"|" + body
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(answer)))])
    return [answer]


def _empty(environ, start_response):
    start_response("204 No Content", [])
    return []


@pytest.fixture
def serve():
    servers = []

    def start(app):
        server = wsgi.Server(("127.0.0.1", 0), app, numthreads=2)
        server.ConnectionClass = Connection
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        servers.append(server)
        return server.bind_addr[1]
    yield start
    for s in servers:
        s.stop()


class _Answers:
    def __init__(self) -> None:
        self.done: list[tuple[int, bytes]] = []
        self.body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.body))
        self.body = b""


def _read_answers(sock, n: int) -> list[tuple[int, bytes]]:
    answers = _Answers()
    while len(answers.done) < n:
        data = sock.recv(65536)
        assert data, "server closed the connection early"
        answers.parser.feed_data(data)
    return answers.done


def test_body_split_across_packets_is_read_whole(serve):
    port = serve(_echo)
    body = b"<q>" + b"x" * 20000 + b"</q>"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                "\r\n").encode()
        for piece in (head[:7], head[7:], body[:100], body[100:9000], body[9000:]):
            s.sendall(piece)
            time.sleep(0.01)
        answers = _read_answers(s, 1)
    assert answers == [(200, b"/a|" + body)]


def test_pipelined_requests_on_one_connection_are_all_answered_in_order(serve):
    port = serve(_echo)
    reqs = b"".join(f"POST /{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{i}".encode()
                    for i in range(3))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(reqs)
        answers = _read_answers(s, 3)
    assert answers == [(200, b"/0|0"), (200, b"/1|1"), (200, b"/2|2")]


def test_absolute_form_target_reaches_the_app_with_its_path(serve):
    port = serve(_echo)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://127.0.0.1:1/cgi/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
                  b"Content-Length: 2\r\n\r\nhi")
        answers = _read_answers(s, 1)
    assert answers == [(200, b"/cgi/x|hi")]


def test_held_head_leaves_with_the_body_in_one_send():
    # SOCK_SEQPACKET keeps the boundary of every send, so each recv is one send.
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, peer:
        writer = SocketWriter(ours)
        writer.holding = True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        writer.holding = False
        writer.write(b"body")
        writer.write(b"more")
        writer.holding = True
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        writer.holding = False
        writer.flush()                       # nothing followed: the head goes alone
        got = [peer.recv(1000) for _ in range(3)]
    assert got == [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", b"more",
                   b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert writer.bytes_written == sum(map(len, got))


def test_answer_without_body_is_still_sent(serve):
    port = serve(_empty)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = _read_answers(s, 1)
    assert answers == [(204, b"")]


# ------------------------------------------------------------- bounded input
# The proxies read bodies with wsgi_util.read_body and answer faults with
# respond_error; the server has node.py's header limit.  Each oversized input is
# answered at once, without the server reading (or buffering) what was announced.

MB = 1 << 20


def _soap_app(limit: int):
    from tunduk.server.core.errors import Origin, XRoadError
    from tunduk.server.edges.wsgi_util import read_body, respond, respond_error

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "GET":        # the body is never read
            return respond(start_response, 200, b"get", "text/plain")
        try:
            body = read_body(environ, limit)
        except XRoadError as err:
            return respond_error(start_response, err, Origin.CLIENT_PROXY)
        return respond(start_response, 200, b"%d" % len(body), "text/plain")
    return app


@pytest.fixture
def bounded_port():
    from tunduk.server.edges.cheroot_io import MAX_HEAD_BYTES
    server = wsgi.Server(("127.0.0.1", 0), _soap_app(1 * MB), numthreads=2)
    server.ConnectionClass = Connection
    server.max_request_header_size = MAX_HEAD_BYTES
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    yield server.bind_addr[1]
    server.stop()


def _answer_to(port: int, head: bytes, then: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(head + then)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    return data


def test_announced_oversized_body_is_refused_before_it_is_sent(bounded_port):
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml"
                        b"\r\nContent-Length: %d\r\n\r\n" % (48 * MB))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"<faultcode>Client.MessageTooLarge</faultcode>" in answer


def test_huge_chunk_is_refused_before_it_is_sent(bounded_port):
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n%x\r\n" % (48 * MB))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Client.MessageTooLarge" in answer


def test_chunked_body_over_the_limit_in_small_chunks_is_refused(bounded_port):
    chunks = (b"%x\r\n" % (256 * 1024) + b"a" * (256 * 1024) + b"\r\n") * 5 + b"0\r\n\r\n"
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n", chunks)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Client.MessageTooLarge" in answer


def test_chunked_body_within_the_limit_is_read_whole(bounded_port):
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n",
                        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n5")


def test_chunk_size_line_without_end_is_refused_not_buffered(bounded_port):
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n", b"1" * (200 * 1024))
    # answered at once (not after a timeout), and the connection is not reused
    assert b"<faultcode>Client.InvalidMessage</faultcode>" in answer
    assert b"line longer than 65536 bytes" in answer
    assert b"\r\nConnection: close\r\n" in answer


def test_endless_request_headers_are_refused(bounded_port):
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: "
                        + b"a" * (200 * 1024) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4")


def test_partly_read_chunked_body_is_not_taken_for_the_next_request(bounded_port):
    # A malformed chunk size ("zz") ends the app's reading early; what follows must
    # not be parsed as a second request on the same connection (request smuggling).
    smuggled = b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n", b"zz\r\n" + smuggled)
    assert b"<faultcode>Client.InvalidMessage</faultcode>" in answer
    assert b"\r\nConnection: close\r\n" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_large_unread_body_is_not_drained(bounded_port):
    # GET with a body the app never reads: answered and closed, not read into memory.
    answer = _answer_to(bounded_port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                        b"\r\n" % (512 * MB))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in answer


def test_chunked_body_at_the_limit_in_small_chunks_is_accepted(bounded_port):
    body_chunks = (b"a\r\n" + b"b" * 10 + b"\r\n") * (MB // 10) + b"0\r\n\r\n"
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n", body_chunks)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n%d" % (MB // 10 * 10))


# -- the header block reader ------------------------------------------------------

def _headers_both_ways(head: bytes):
    """(cheroot's HeaderReader, ours) on the same header bytes."""
    from cheroot.server import HeaderReader, SizeCheckWrapper

    from tunduk.server.edges.cheroot_io import MAX_HEAD_BYTES, HeaderBlockReader, SocketReader
    out = []
    for reader in (HeaderReader(), HeaderBlockReader()):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(head + b"BODY")
            a.shutdown(socket.SHUT_WR)
            rfile = SocketReader(b)
            out.append((reader(SizeCheckWrapper(rfile, MAX_HEAD_BYTES)), rfile.read(4)))
    return out


@pytest.mark.parametrize("head", [
    b"\r\n",
    b"Host: x\r\n\r\n",
    b"Host: x\r\nContent-Length: 12\r\nSOAPAction: \"urn:a\"\r\nx-tunduk-signature: "
    + b"QUJD" * 700 + b"\r\n\r\n",
    b"Accept: a\r\nAccept: b\r\nHost:x \t\r\nEmpty:\r\nweird-CASE: v:w\r\n\r\n",
    b"X: a\rb\r\n\r\n",                         # a bare CR inside a value stays
])
def test_header_block_reader_reads_what_cheroot_reads(head):
    theirs, ours = _headers_both_ways(head)
    assert ours == theirs
    assert ours[1] == b"BODY"                   # and leaves the body in the buffer


def _status(port: int, request: bytes) -> bytes:
    return _answer_to(port, request).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("head,status", [
    (b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n", b"400"),     # bare LF
    (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", b"400"),   # obs-fold
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", b"400"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n", b"400"),
])
def test_malformed_header_fields_are_refused(bounded_port, head, status):
    assert _status(bounded_port, head).split(b" ")[1] == status


def test_header_block_split_byte_by_byte_is_read(serve):
    port = serve(_echo)
    request = b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-B: 1\r\n\r\nok"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            s.sendall(request[i:i + 1])
            time.sleep(0.001)
        assert _read_answers(s, 1) == [(200, b"/h|ok")]


def test_header_block_over_the_limit_is_413(bounded_port):
    from tunduk.server.edges.cheroot_io import MAX_HEAD_BYTES
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEAD_BYTES // 100))
    answer = _answer_to(bounded_port, b"POST / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_header_block_arriving_a_byte_at_a_time_is_read_and_checked():
    """Each recv brings one byte (TLS records can be that small): line ends split
    across reads still count, a bare LF is still found, and each byte is searched
    once (a 16 KB head, byte by byte)."""
    from cheroot.server import SizeCheckWrapper

    from tunduk.server.edges.cheroot_io import MAX_HEAD_BYTES, HeaderBlockReader, SocketReader

    class OneByte:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def recv(self, n: int) -> bytes:
            out, self.data = self.data[:1], self.data[1:]
            return out
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 60) for i in range(250))
    head = fields + b"Host: x\r\n\r\n"
    got = HeaderBlockReader()(SizeCheckWrapper(SocketReader(OneByte(head + b"BODY")),
                                               MAX_HEAD_BYTES), {})
    assert got[b"Host"] == b"x" and got[b"X-249"] == b"v" * 60 and len(got) == 251
    with pytest.raises(ValueError, match="CRLF"):
        HeaderBlockReader()(SizeCheckWrapper(SocketReader(OneByte(
            fields + b"Bad: lf\nHost: x\r\n\r\n")), MAX_HEAD_BYTES), {})
