"""The keep-alive pool: bounded answers, and whether a failed request may be retried."""
from __future__ import annotations

import threading

import pytest
from cheroot import wsgi

from tests.fixtures.pki import free_port
from tunduk.server.edges.http_pool import Pool, TransportError


@pytest.fixture
def big_answer_server():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [b"<a>" + b"x" * 5000 + b"</a>"]

    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=2)
    server.prepare()
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    yield port
    server.stop()
    t.join(5)


def test_answer_larger_than_the_limit_is_refused(big_answer_server):
    pool = Pool("127.0.0.1", big_answer_server, max_response_bytes=1000)
    with pytest.raises(TransportError) as ei:
        pool.post("/", b"<q/>", {"Content-Type": "text/xml"})
    assert "larger than 1000 bytes" in str(ei.value)
    assert ei.value.sent  # the request did reach the server
    ok = Pool("127.0.0.1", big_answer_server).post("/", b"<q/>", {"Content-Type": "text/xml"})
    assert ok.status == 200 and len(ok.body) == 5007


def test_connect_failure_is_marked_not_sent():
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", free_port(), timeout=5).post("/", b"<q/>", {})
    assert ei.value.sent is False
    assert "refused" in str(ei.value)


class ScriptedServer:
    """A raw TCP server answering each connection's requests with scripted bytes.

    ``script`` is a list of connections; each a list of answers (bytes) sent one
    per request read; after its answers the connection is closed.
    """

    def __init__(self, script: list[list[bytes]]) -> None:
        import socket
        self.script = list(script)
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        for answers in self.script:
            conn, _ = self.sock.accept()
            self.connections += 1
            with conn:
                for answer in answers:
                    self.requests.append(self._read_request(conn))
                    conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


def test_chunked_answer_is_decoded_and_connection_reused():
    srv = ScriptedServer([[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    ]])
    pool = Pool("127.0.0.1", srv.port)
    first = pool.post("/p?x=1", b"<q/>", {"Content-Type": "text/xml"})
    assert (first.status, first.body, first.headers["x-a"]) == (200, b"abcde", "1")
    second = pool.get("/wsdl")
    assert (second.status, second.body) == (201, b"ok")
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"POST /p?x=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 4\r\n" in srv.requests[0]
    assert srv.requests[0].endswith(b"\r\n\r\n<q/>")
    assert srv.requests[1].startswith(b"GET /wsdl HTTP/1.1\r\n")
    srv.close()


def test_answer_delimited_by_close_is_read_to_the_end():
    srv = ScriptedServer([[b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<a/>"]])
    answer = Pool("127.0.0.1", srv.port).post("/", b"<q/>", {})
    assert (answer.status, answer.body) == (200, b"<a/>")
    srv.close()


def test_stale_keep_alive_connection_is_retried_once_on_a_new_one():
    # The first connection answers once and is then closed by the server while
    # idle in the pool; the next request must go out again on a fresh connection.
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"],
    ])
    pool = Pool("127.0.0.1", srv.port)
    assert pool.post("/", b"a", {}).body == b"1"
    assert pool.post("/", b"b", {}).body == b"2"
    assert srv.connections == 2
    assert [r[-1:] for r in srv.requests] == [b"a", b"b"]
    srv.close()


def test_connection_closed_in_mid_answer_is_a_sent_transport_error():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"<q/>", {})
    assert "closed the connection in mid-answer" in str(ei.value)
    assert ei.value.sent
    srv.close()


def test_fresh_connection_closed_without_answer_is_a_sent_transport_error():
    srv = ScriptedServer([[b""]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"<q/>", {})
    assert "closed the connection without answering" in str(ei.value)
    assert ei.value.sent and srv.connections == 1
    srv.close()


def test_garbage_answer_is_an_invalid_http_answer():
    srv = ScriptedServer([[b"SMTP ready\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"<q/>", {})
    assert "invalid HTTP answer" in str(ei.value)
    srv.close()


def test_streamed_answer_over_the_limit_is_refused():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port, max_response_bytes=1000).post("/", b"<q/>", {})
    assert "larger than 1000 bytes" in str(ei.value)
    srv.close()


def test_header_with_line_break_is_refused_before_sending():
    srv = ScriptedServer([])
    with pytest.raises(ValueError):
        Pool("127.0.0.1", srv.port).post("/", b"<q/>", {"SOAPAction": "a\r\nX-Evil: 1"})
    srv.close()
