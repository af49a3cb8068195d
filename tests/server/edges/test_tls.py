"""TLS contexts of the security server's edges."""
from __future__ import annotations


def test_client_context_takes_no_later_certificate_request(tmp_path):
    import ssl

    from tunduk.server import pki
    from tunduk.server.edges import tls
    ca_key, ca_cert = pki.create_ca(tmp_path / "ca")
    ctx = tls.client_context(ca_cert.read_bytes(), ca_cert, ca_key)
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.post_handshake_auth is False

