"""TLS contexts for the server proxy (mutual TLS) and for calls to peer servers.

Both sides require a certificate issued by a federation CA; on top of that the
client pins the peer's certificate to those registered in the federation, and the
server proxy checks the peer against the client member's servers (core/server_side).
"""
from __future__ import annotations

import ssl
from pathlib import Path


def _base(purpose: ssl.Purpose, ca_pem: bytes, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def server_context(ca_pem: bytes, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = _base(ssl.Purpose.CLIENT_AUTH, ca_pem, cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_pem: bytes, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = _base(ssl.Purpose.SERVER_AUTH, ca_pem, cert, key)
    # Peers are identified by certificate fingerprint from the federation
    # configuration, not by host name (addresses are often bare IPs).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    # A certificate is asked for and checked once, in the handshake: no TLS 1.2
    # renegotiation, no TLS 1.3 post-handshake authentication.  A certificate alert
    # after a request was written can then only mean it was refused unhandled
    # (edges/aio/upstream.py).
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.post_handshake_auth = False
    return ctx
