"""Scripted HTTP servers and TLS material for the upstream connection tests
(aio/test_upstream.py): raw sockets that answer exactly as a test says."""
from __future__ import annotations

import threading

import pytest
from cheroot import wsgi

from tests.fixtures.pki import free_port


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


def tls_server(server_ctx, answer: bytes, *, clean_close: bool):
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

