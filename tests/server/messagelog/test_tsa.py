"""RFC 3161 over real HTTP: the tunduk TSA app on a socket, the client, verification."""
from __future__ import annotations

import hashlib
import socket
import urllib.request

import pytest
from cryptography.hazmat.primitives import serialization

from tunduk.server.devfed import free_port
from tunduk.server.messagelog import tsa_pki, tsa_server
from tunduk.server.messagelog.tsa_client import (TimestampError, TsaClient, build_request,
                                                 parse_response, verify_token)

DIGEST = hashlib.sha256(b"chain head").digest()


def test_round_trip_and_pinned_verification(tsa):
    token = TsaClient(tsa.url, tsa.cert_der).timestamp(DIGEST)
    assert token.tsa_cert_der == tsa.cert_der
    again = verify_token(token.token_der, digest=DIGEST, tsa_cert_der=tsa.cert_der)
    assert again.serial == token.serial


def test_unpinned_uses_included_cert(tsa):
    token = TsaClient(tsa.url).timestamp(DIGEST)
    assert verify_token(token.token_der, digest=DIGEST).tsa_cert_der == tsa.cert_der


def test_token_for_other_data_rejected(tsa):
    token = TsaClient(tsa.url, tsa.cert_der).timestamp(DIGEST)
    with pytest.raises(TimestampError, match="imprint mismatch"):
        verify_token(token.token_der, digest=hashlib.sha256(b"other").digest(),
                     tsa_cert_der=tsa.cert_der)


def test_token_from_other_tsa_key_rejected(tsa, test_ca):
    key, cert = tsa_pki.make_tsa_cert(*test_ca, common_name="rogue TSA")
    other = tsa_server.TimeStamper(key, cert)
    req, nonce = build_request(DIGEST)
    token = parse_response(other.respond(req))
    with pytest.raises(TimestampError, match="expected TSA"):
        verify_token(token, digest=DIGEST, tsa_cert_der=tsa.cert_der)


def test_same_name_other_key_rejected(tsa, test_ca):
    """A token signed by another key under a certificate copying the pinned one's
    issuer and serial (sid matches) fails the signature check."""
    from cryptography.hazmat.primitives.asymmetric import ec
    stamper = tsa_server.TimeStamper(tsa.key, tsa.cert)
    stamper.key = ec.generate_private_key(ec.SECP256R1())
    req, _ = build_request(DIGEST)
    token = parse_response(stamper.respond(req))
    with pytest.raises(TimestampError, match="signature does not verify"):
        verify_token(token, digest=DIGEST, tsa_cert_der=tsa.cert_der)


def test_tampered_token_rejected(tsa):
    token = bytearray(TsaClient(tsa.url, tsa.cert_der).timestamp(DIGEST).token_der)
    i = token.find(DIGEST)
    assert i > 0
    token[i + 40 if i + 40 < len(token) else i] ^= 0x01  # flip a bit after the imprint
    with pytest.raises(TimestampError):
        verify_token(bytes(token), digest=DIGEST, tsa_cert_der=tsa.cert_der)


def test_cert_without_timestamping_eku_rejected(tsa, test_ca):
    from tunduk.server.messagelog.tsa_pki import make_self_signed_ca
    key, cert = make_self_signed_ca("not a TSA")
    stamper = tsa_server.TimeStamper(key, cert)
    req, _ = build_request(DIGEST)
    token = parse_response(stamper.respond(req))
    with pytest.raises(TimestampError, match="extendedKeyUsage"):
        verify_token(token, digest=DIGEST)


def test_tsa_cert_has_critical_timestamping_eku(tsa):
    from cryptography import x509
    ext = tsa.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ext.critical
    assert list(ext.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]


def test_bad_request_refused_with_status(tsa):
    req = urllib.request.Request(tsa.url, data=b"\x30\x03\x02\x01\x01", method="POST",
                                 headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(req) as resp:
        body = resp.read()
    with pytest.raises(TimestampError, match="rejection"):
        parse_response(body)


def test_wrong_content_type_refused(tsa):
    req = urllib.request.Request(tsa.url, data=b"x", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req)
    assert ei.value.code == 415


def test_unreachable_tsa_raises():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TimestampError, match="cannot reach TSA"):
        TsaClient(f"http://127.0.0.1:{port}/", timeout=5).timestamp(DIGEST)


def test_openssl_accepts_token(tsa, tmp_path):
    """Interoperability: OpenSSL's own RFC 3161 verifier accepts our tokens."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    data = b"some data"
    body, _ = build_request(hashlib.sha256(data).digest())
    req = urllib.request.Request(tsa.url, data=body, method="POST",
                                 headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(req) as resp:
        (tmp_path / "resp.tsr").write_bytes(resp.read())
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "tsa.pem").write_bytes(tsa.cert.public_bytes(serialization.Encoding.PEM))
    r = subprocess.run(["openssl", "ts", "-verify", "-in", str(tmp_path / "resp.tsr"),
                        "-data", str(tmp_path / "data"), "-CAfile", str(tmp_path / "tsa.pem"),
                        "-partial_chain"], capture_output=True, text=True)
    assert "Verification: OK" in r.stdout, r.stdout + r.stderr


def test_tsa_command_creates_cert_and_serves(tmp_path, test_ca):
    """``tunduk tsa`` as a process: creates its key (mode 0600) and answers requests."""
    import os
    import subprocess
    import sys
    import time
    ca_key, ca_cert = test_ca
    tsa_pki.write_key(tmp_path / "ca.key", ca_key)
    tsa_pki.write_cert(tmp_path / "ca.pem", ca_cert)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunduk.server.cli", "tsa", "--key", str(tmp_path / "tsa.key"),
         "--cert", str(tmp_path / "tsa.pem"), "--ca-key", str(tmp_path / "ca.key"),
         "--ca-cert", str(tmp_path / "ca.pem"), "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "tunduk tsa did not start"
                time.sleep(0.1)
        assert os.stat(tmp_path / "tsa.key").st_mode & 0o777 == 0o600
        cert = tsa_pki.load_cert(tmp_path / "tsa.pem")
        der = cert.public_bytes(serialization.Encoding.DER)
        token = TsaClient(f"http://127.0.0.1:{port}/", der).timestamp(DIGEST)
        assert token.tsa_cert_der == der
    finally:
        proc.terminate()
        proc.wait(timeout=30)
