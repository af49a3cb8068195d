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
        self.closed = threading.Semaphore(0)     # released as each connection closes
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
            try:
                conn, _ = self.sock.accept()
            except OSError:          # closed by the test before the script ran out
                return
            self.connections += 1
            with conn:
                for answer in answers:
                    self.requests.append(self._read_request(conn))
                    conn.sendall(answer)
            self.closed.release()

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


def test_connection_closed_while_idle_is_not_used_again():
    # The first connection answers once and is then closed by the server while
    # idle in the pool; the next request goes out on a fresh connection.
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"],
    ])
    pool = Pool("127.0.0.1", srv.port)
    assert pool.post("/", b"a", {}).body == b"1"
    assert srv.closed.acquire(timeout=10)    # closed while idle, before the next request
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


@pytest.mark.parametrize("path, headers", [
    ("/", {"SOAPAction": "a\r\nX-Evil: 1"}),
    ("/a HTTP/1.1\r\nX-Smuggled: yes\r\nFoo: bar", {}),
    ("/a b", {}),
    ("/", {"Bad Name": "x"}),
    ("/", {"SOAPAction": "caf\u00e9\u20ac"}),
])
def test_request_line_or_header_that_would_smuggle_is_refused_before_connecting(
        path, headers):
    srv = ScriptedServer([])
    with pytest.raises(ValueError):
        Pool("127.0.0.1", srv.port).post(path, b"<q/>", headers)
    assert srv.connections == 0
    srv.close()


def test_interim_1xx_answers_are_skipped_and_do_not_desynchronise_the_connection():
    srv = ScriptedServer([[
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2",
    ]])
    pool = Pool("127.0.0.1", srv.port)
    first = pool.post("/", b"a", {})
    assert (first.status, first.body, first.headers) == (200, b"r1", {"content-length": "2"})
    assert pool.post("/", b"b", {}).body == b"r2"
    assert srv.connections == 1
    srv.close()


def test_bytes_after_a_complete_answer_are_not_merged_and_the_connection_is_dropped():
    srv = ScriptedServer([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
         b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nevil!"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"],
    ])
    pool = Pool("127.0.0.1", srv.port)
    first = pool.post("/", b"a", {})
    assert (first.body, first.headers) == (b"ok", {"content-length": "2"})
    assert pool.post("/", b"b", {}).body == b"clean"
    assert srv.connections == 2
    srv.close()


def test_trailer_fields_do_not_change_the_headers():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                           b"Content-Type: text/html\r\n\r\n"]])
    answer = Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert (answer.body, answer.headers["content-type"]) == (b"ok", "text/xml")
    srv.close()


def test_endless_trailer_is_refused_with_bounded_memory():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\nok\r\n0\r\nX-T: " + b"a" * (1 << 20)]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert "chunk framing or trailer fields are too large" in str(ei.value)
    srv.close()


def test_data_after_a_connection_close_answer_keeps_the_answer():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n"
                           b"\r\nokJUNK"]])
    answer = Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert (answer.status, answer.body) == (200, b"ok")
    srv.close()


def test_endless_headers_are_refused_with_bounded_memory():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20)
                           + b"\r\nContent-Length: 0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert "headers exceed 65536 bytes" in str(ei.value)
    srv.close()


def test_too_many_header_fields_are_refused():
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101
                           + b"Content-Length: 0\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert "more than 100 header fields" in str(ei.value)
    srv.close()


def test_protocol_switch_is_a_transport_error():
    srv = ScriptedServer([[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                           b"Connection: Upgrade\r\n\r\n"]])
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port).post("/", b"a", {})
    assert "switched protocols" in str(ei.value)
    srv.close()


def test_request_is_never_sent_twice_when_the_server_closes_after_reading_it():
    # A pooled connection; the server reads the second request (it may have acted on
    # it) and closes without answering: the pool must not send it again elsewhere.
    srv = ScriptedServer([[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", b""],
                          [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"]])
    pool = Pool("127.0.0.1", srv.port)
    assert pool.post("/", b"a", {}).body == b"1"
    with pytest.raises(TransportError) as ei:
        pool.post("/", b"payment-2", {})
    assert ei.value.sent
    assert "closed the connection without answering" in str(ei.value)
    assert [r.endswith(b"payment-2") for r in srv.requests] == [False, True]
    assert srv.connections == 1
    srv.close()


# ------------------------------------------------------------------------ TLS

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed server certificate: (cert path, key path, DER)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return str(d / "c.pem"), str(d / "k.pem"), cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def tls_material(tls_files):
    """A server context with that certificate and a client context trusting only it."""
    import ssl
    cert_path, key_path, der = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
    client_ctx.check_hostname = False
    return server_ctx, client_ctx, der


def _tls_server(server_ctx, answer: bytes, *, clean_close: bool):
    """Accept one TLS connection, read what arrives, send ``answer``, then close with
    or without TLS close_notify.  Returns (port, received bytes list, thread)."""
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def run() -> None:
        raw, _ = listener.accept()
        try:
            serve_one(raw)
        except OSError:
            pass               # the client gave up (e.g. after a pin mismatch)
        finally:
            raw.close()
            listener.close()

    def serve_one(raw) -> None:
        tls = server_ctx.wrap_socket(raw, server_side=True)
        tls.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        got.append(data)
        if data:
            tls.sendall(answer)
        if clean_close:
            tls.unwrap()
        else:
            socket.socket.shutdown(tls, socket.SHUT_WR)   # bare FIN
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return listener.getsockname()[1], got, t


def test_peer_certificate_pin_mismatch_sends_no_request_byte(tls_material):
    from tunduk.server.edges.http_pool import pin_to
    server_ctx, client_ctx, _der = tls_material
    port, got, t = _tls_server(server_ctx, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                               clean_close=True)
    pool = Pool("127.0.0.1", port, ssl_context=client_ctx,
                verify_peer=pin_to(frozenset({"00" * 32})))
    with pytest.raises(TransportError) as ei:
        pool.post("/", b"secret request", {})
    t.join(5)
    assert not ei.value.sent
    assert "is not registered" in str(ei.value)
    assert got in ([], [b""])          # not one byte of the request arrived


def test_pinned_peer_answers_over_tls(tls_material):
    import hashlib

    from tunduk.server.edges.http_pool import pin_to
    server_ctx, client_ctx, der = tls_material
    port, got, t = _tls_server(server_ctx,
                               b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<a/>",
                               clean_close=True)
    pool = Pool("127.0.0.1", port, ssl_context=client_ctx,
                verify_peer=pin_to(frozenset({hashlib.sha256(der).hexdigest()})))
    answer = pool.post("/", b"<q/>", {})
    pool.close()
    t.join(5)
    assert (answer.status, answer.body, answer.peer_cert_der) == (200, b"<a/>", der)


def test_close_delimited_answer_cut_by_a_bare_fin_over_tls_is_refused(tls_material):
    server_ctx, client_ctx, _der = tls_material
    port, _got, t = _tls_server(
        server_ctx, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<Body><amount>100",
        clean_close=False)
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", port, ssl_context=client_ctx).post("/", b"<q/>", {})
    t.join(5)
    assert "closed the connection in mid-answer" in str(ei.value)


def test_close_delimited_answer_with_tls_close_notify_is_complete(tls_material):
    server_ctx, client_ctx, _der = tls_material
    port, _got, t = _tls_server(
        server_ctx, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<Body/>",
        clean_close=True)
    answer = Pool("127.0.0.1", port, ssl_context=client_ctx).post("/", b"<q/>", {})
    t.join(5)
    assert (answer.status, answer.body) == (200, b"<Body/>")


def test_tls_connection_is_kept_alive_and_reused(tls_material):
    import socket
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
    pool = Pool("127.0.0.1", listener.getsockname()[1], ssl_context=client_ctx)
    bodies = [pool.post("/", b"<q/>", {}).body for _ in range(3)]
    pool.close()
    t.join(5)
    assert bodies == [b"0", b"1", b"2"] and accepted == [1]


# ------------------------------------------------------- answers before the body

class EarlyAnswerServer:
    """Reads the request head only, answers at once and closes with the body unread
    (the kernel then resets the connection while the client is still sending)."""

    def __init__(self, answer: bytes) -> None:
        import socket
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


def test_answer_sent_before_the_body_was_read_is_returned_not_a_reset():
    # As a server proxy does for a body over its limit (HTTP 413, then close): the
    # caller must get that answer, not "closed before the request was sent".
    # (no "Connection: close": the connection would be kept but for the failed send)
    srv = EarlyAnswerServer(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/xml\r\n"
                            b"Content-Length: 9\r\n\r\n<toobig/>")
    pool = Pool("127.0.0.1", srv.port, timeout=30)
    answer = pool.post("/", b"x" * (32 * 1024 * 1024), {"Content-Type": "text/xml"})
    assert (answer.status, answer.body) == (413, b"<toobig/>")
    assert pool._idle.empty()          # a connection whose send failed is not reused
    srv.close()


def test_close_delimited_answer_cut_by_the_reset_is_not_taken_for_whole():
    # The kernel drops what of the answer had not arrived when the reset came; the
    # read after the failed send then sees an end, which is not the answer's end.
    srv = EarlyAnswerServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<r>"
                            + b"y" * (2 * 1024 * 1024) + b"</r>")
    try:
        answer = Pool("127.0.0.1", srv.port, timeout=30).post(
            "/", b"x" * (32 * 1024 * 1024), {})
    except TransportError as exc:
        assert exc.sent and "mid-answer" in str(exc)
    else:   # the whole answer arrived before the reset: then it must be complete
        assert answer.body.endswith(b"</r>"), len(answer.body)
    srv.close()


def test_reset_without_an_answer_is_still_not_sent():
    srv = EarlyAnswerServer(b"")
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", srv.port, timeout=30).post("/", b"x" * (32 * 1024 * 1024), {})
    assert ei.value.sent is False
    assert "closed the connection before the request was sent" in str(ei.value)
    srv.close()


def test_connection_busy_when_the_pool_closes_is_closed_after_its_answer():
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
        pool = Pool("127.0.0.1", port, timeout=10)
        answers = []
        t = threading.Thread(target=lambda: answers.append(pool.post("/", b"b", {})))
        t.start()
        assert entered.wait(10)
        pool.close()                       # the busy connection is not idle yet
        release.set()
        t.join(10)
        assert answers and answers[0].body == b"ok"
        assert pool._idle.empty()          # closed on return instead of kept
        assert pool.post("/", b"c", {}).body == b"ok"   # still usable, not kept
        assert pool._idle.empty()
    finally:
        release.set()
        server.stop()


@pytest.mark.parametrize("tls13", [True, False])
def test_a_refused_client_certificate_means_the_request_was_not_handled(
        tls_files, tls_material, tls13):
    """With TLS 1.3 the refusal arrives after our side of the handshake is done, with
    the first read: the request was written but the server never handled it, so
    another server of the provider may be tried (sent=False)."""
    import ssl
    cert_path, key_path, der = tls_files
    _server_ctx, client_ctx, _der = tls_material
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    strict.load_cert_chain(cert_path, key_path)
    strict.verify_mode = ssl.CERT_REQUIRED               # and the client has none
    strict.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    if not tls13:
        strict.maximum_version = ssl.TLSVersion.TLSv1_2
    port, got, t = _tls_server(strict, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                               clean_close=True)
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", port, ssl_context=client_ctx, timeout=5).post("/", b"<q/>", {})
    t.join(5)
    assert ei.value.sent is False
    assert got == []                                     # the server handled nothing
    # TLS 1.2: the handshake itself fails, before anything is written
    assert ("refused this server's TLS certificate (TLSV13_ALERT_CERTIFICATE_REQUIRED)"
            if tls13 else "TLS failure") in str(ei.value), str(ei.value)


class _AlertAfterRequest:
    """A socket standing for a pooled TLS connection whose server, after reading our
    request, sends a certificate alert (TLS 1.2 renegotiation or TLS 1.3
    post-handshake authentication gone wrong): the request may have been handled."""

    def __init__(self) -> None:
        import socket
        self.sent = b""
        self._a, self._b = socket.socketpair()     # a real fd for the idle check

    def fileno(self) -> int:
        return self._a.fileno()

    def settimeout(self, t) -> None:
        pass

    def send(self, data) -> int:
        self.sent += bytes(data)
        return len(data)

    def recv(self, n: int) -> bytes:
        import ssl
        exc = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
        exc.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        raise exc

    def close(self) -> None:
        self._a.close()
        self._b.close()


def test_a_certificate_alert_on_a_used_connection_may_follow_a_handled_request():
    from tunduk.server.edges.http_pool import _Connection
    pool = Pool("127.0.0.1", free_port(), timeout=5)
    sock = _AlertAfterRequest()
    pool._idle.put(_Connection(sock, b"cert"))          # a connection used before
    with pytest.raises(TransportError) as ei:
        pool.post("/", b"<q/>", {})
    assert sock.sent.startswith(b"POST / HTTP/1.1")      # the request went out
    assert ei.value.sent is True                         # so no other server may get it


def test_client_context_takes_no_later_certificate_request(tmp_path):
    import ssl

    from tunduk.server import pki
    from tunduk.server.edges import tls
    ca_key, ca_cert = pki.create_ca(tmp_path / "ca")
    ctx = tls.client_context(ca_cert.read_bytes(), ca_cert, ca_key)
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.post_handshake_auth is False
