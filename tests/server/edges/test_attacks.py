"""Attacks on the server proxy, sent over real mutual TLS: each must fail with its fault.

The attacker holds a TLS client certificate registered for the consumer's security
server (a compromised peer or a replaying middlebox) unless the test says otherwise, and
crafts the signed request itself: message bytes plus the detached signature in the
X-Tunduk-Signature header (core/detached.py).
"""
from __future__ import annotations

import copy
import ssl

import pytest
from lxml import etree

from tests.http_helpers import post
from tests.xroad_requests import request
from tunduk.server import pki
from tunduk.server.core import detached
from tunduk.server.core.client_side import ClientSide, PendingExchange
from tunduk.server.core.identifiers import MemberId
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.messagelog import NullLog

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSU_ID = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Id"
ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]


@pytest.fixture
def fed(run_federation, echo_backend):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    return run_federation(services=[svc], access=ACCESS)


def tls_context(fed, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(fed.files.ca.cert))
    ctx.check_hostname = False
    if cert is not False:
        ctx.load_cert_chain(str(cert or fed.files.consumer.auth_cert),
                            str(key or fed.files.consumer.auth_key))
    return ctx


def prepared(fed, signer: SigningKey | None = None, raw: bytes | None = None
             ) -> PendingExchange:
    conf = fed.files.consumer.conf()
    signer = signer or SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
    side = ClientSide(conf, signer, TrustAnchor.from_pem(conf.federation.ca_certs_pem),
                      NullLog())
    return side.prepare(raw or request(), "text/xml; charset=utf-8")


def server_proxy_url(fed) -> str:
    host, port = fed.provider.server_proxy_address
    return f"https://{host}:{port}/"


def send(fed, body: bytes, ctx=None, signature: bytes | None = None,
         content_type: str = "text/xml; charset=utf-8"):
    """POST ``body`` signed by ``signature`` (by default: the consumer's signature over
    the request before any tampering; None and b"" send no signature header)."""
    headers = {}
    if signature is None:
        signature = _last_signature.get(id(fed))
    if signature:
        headers[detached.SIGNATURE_HEADER] = detached.header_value(signature)
    return post(server_proxy_url(fed), body, content_type, headers=headers,
                context=ctx or tls_context(fed))


_last_signature: dict = {}


@pytest.fixture(autouse=True)
def _forget_signatures():
    yield
    _last_signature.clear()


def signed(fed, signer: SigningKey | None = None, raw: bytes | None = None) -> bytes:
    """The signed request's bytes; its signature goes with the next ``send``."""
    pending = prepared(fed, signer, raw)
    _last_signature[id(fed)] = pending.signature
    return pending.body


def test_untampered_request_is_accepted(fed):
    reply = send(fed, signed(fed))
    assert reply.status == 200, reply.body
    assert reply.fault_code is None


def test_tampered_body(fed):
    body = signed(fed).replace(b"21205199900011", b"21205199900099")
    reply = send(fed, body)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"


def test_tampered_header(fed):
    body = signed(fed).replace(b"KG12345678901234", b"KG99999999999999")
    assert send(fed, body).fault_code == "Server.ServerProxy.InvalidSignatureValue"


def test_signature_moved_to_wrap_forged_body(fed):
    root = etree.fromstring(signed(fed))
    header = root.find(f"{{{SOAP}}}Header")
    body = root.find(f"{{{SOAP}}}Body")
    forged = copy.deepcopy(body)
    forged[0][0].text = "21205199900099"
    wrapper = etree.SubElement(header, "Wrapper")
    root.remove(body)
    wrapper.append(body)          # the signed original, hidden in the header
    root.append(forged)           # forged content where the service reads
    reply = send(fed, etree.tostring(root))
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "changed after signing" in reply.fault_string


def test_forged_body_with_other_id_and_signed_original_kept(fed):
    root = etree.fromstring(signed(fed))
    body = root.find(f"{{{SOAP}}}Body")
    forged = copy.deepcopy(body)
    forged.set(WSU_ID, "forged")
    forged[0][0].text = "21205199900099"
    header = root.find(f"{{{SOAP}}}Header")
    header.append(body)
    root.append(forged)
    assert send(fed, etree.tostring(root)).fault_code == \
        "Server.ServerProxy.InvalidSignatureValue"


def test_unsigned_request(fed):
    reply = send(fed, request())
    assert reply.fault_code == "Server.ServerProxy.InvalidSignature"
    assert "no X-Tunduk-Signature header" in reply.fault_string


def test_request_signed_the_old_way_tells_the_operator_to_upgrade_the_peer(fed):
    # a tunduk server from before detached signatures signs inside the envelope
    old = request().replace(b"<SOAP-ENV:Header>", b'<SOAP-ENV:Header><wsse:Security '
                            b'xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-'
                            b'200401-wss-wssecurity-secext-1.0.xsd"/>', 1)
    assert old != request()
    reply = send(fed, old)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignature"
    assert "upgrade that server" in reply.fault_string


def test_signing_certificate_from_another_ca(fed, tmp_path):
    ca_key, ca_cert = pki.create_ca(tmp_path / "rogue", name="rogue CA")
    key, cert = tmp_path / "s.key", tmp_path / "s.pem"
    pki.issue_sign_cert(ca_key, ca_cert, MemberId.parse("KG/GOV/70000002"),
                        "Public Service Centre", key, cert, "ec")
    body = signed(fed, SigningKey.load(key, cert))
    assert send(fed, body).fault_code == "Server.ServerProxy.CertValidation"


def test_signed_by_another_member(fed):
    p = fed.files.provider
    body = signed(fed, SigningKey.load(p.sign_key, p.sign_cert))
    assert send(fed, body).fault_code == "Server.ServerProxy.IncorrectCertificate"


def test_tls_client_certificate_not_registered(fed, tmp_path):
    key, cert = tmp_path / "a.key", tmp_path / "a.pem"
    pki.issue_auth_cert(fed.files.ca.key, fed.files.ca.cert,
                        MemberId.parse("KG/GOV/70000002"), "Public Service Centre", "ss9",
                        key, cert, "ec")
    reply = send(fed, signed(fed), tls_context(fed, cert, key))
    assert reply.fault_code == "Server.ServerProxy.SslAuthenticationFailed"


def test_tls_client_certificate_of_another_member(fed):
    p = fed.files.provider  # registered, but for the provider, not the client's member
    reply = send(fed, signed(fed), tls_context(fed, p.auth_cert, p.auth_key))
    assert reply.fault_code == "Server.ServerProxy.SslAuthenticationFailed"


def test_tls_client_certificate_from_another_ca_fails_handshake(fed, tmp_path):
    ca_key, ca_cert = pki.create_ca(tmp_path / "rogue", name="rogue CA")
    key, cert = tmp_path / "a.key", tmp_path / "a.pem"
    pki.issue_auth_cert(ca_key, ca_cert, MemberId.parse("KG/GOV/70000002"),
                        "Public Service Centre", "ss1", key, cert, "ec")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        send(fed, signed(fed), tls_context(fed, cert, key))


def test_tls_without_client_certificate_fails_handshake(fed):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        send(fed, signed(fed), tls_context(fed, cert=False))


def test_plain_http_to_server_proxy_is_refused(fed):
    host, port = fed.provider.server_proxy_address
    try:
        reply = post(f"http://{host}:{port}/", signed(fed))
    except (ConnectionError, OSError):
        return  # the connection was dropped: refused
    assert reply.status == 400  # cheroot's answer to plain HTTP on a TLS port
    assert b"getBirthRecordResponse" not in reply.body


def test_header_added_after_signing_is_refused(fed):
    root = etree.fromstring(signed(fed))
    header = root.find(f"{{{SOAP}}}Header")
    etree.SubElement(header, "{http://x-road.eu/xsd/representation.xsd}representedParty")
    reply = send(fed, etree.tostring(root))
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "changed after signing" in reply.fault_string


# ------------------------------------------------- the detached signature itself

def test_signature_of_another_message_is_refused(fed):
    other = prepared(fed).signature
    reply = send(fed, signed(fed), signature=other)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"


def test_message_sent_with_another_content_type_than_signed_is_refused(fed):
    reply = send(fed, signed(fed), content_type="application/xml; charset=utf-8")
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "signed as 'text/xml; charset=utf-8'" in reply.fault_string


def test_changed_signing_time_is_refused(fed):
    body = signed(fed)
    sig = _last_signature[id(fed)]
    later = sig.replace(b"<wsu:Created>20", b"<wsu:Created>21", 1)
    assert later != sig
    reply = send(fed, body, signature=later)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "properties" in reply.fault_string


def test_changed_signature_value_is_refused(fed):
    body = signed(fed)
    root = etree.fromstring(_last_signature[id(fed)])
    value = root.find("{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    raw = bytearray(__import__("base64").b64decode(value.text))
    raw[-1] ^= 1
    value.text = __import__("base64").b64encode(bytes(raw)).decode()
    reply = send(fed, body, signature=etree.tostring(root))
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"


def test_extra_reference_in_the_signature_is_refused(fed):
    body = signed(fed)
    root = etree.fromstring(_last_signature[id(fed)])
    info = root.find("{http://www.w3.org/2000/09/xmldsig#}SignedInfo")
    info.append(copy.deepcopy(info[-1]))
    reply = send(fed, body, signature=etree.tostring(root))
    assert reply.fault_code == "Server.ServerProxy.InvalidSignature"
    assert "exactly" in reply.fault_string


def test_signature_header_that_is_not_base64_is_refused(fed):
    body = signed(fed)
    reply = post(server_proxy_url(fed), body, "text/xml; charset=utf-8",
                 headers={detached.SIGNATURE_HEADER: "not base64!"},
                 context=tls_context(fed))
    assert reply.fault_code == "Server.ServerProxy.InvalidSignature"


def test_signature_with_a_doctype_is_refused(fed):
    body = signed(fed)
    evil = b'<!DOCTYPE x [<!ENTITY e "x">]>' + _last_signature[id(fed)]
    reply = send(fed, body, signature=evil)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignature"


# ------------------------------------- one message: the charset every parser reads
def _smuggling(fed) -> bytes:
    """A request whose Body, read as UTF-7, holds a second operation before the one
    access is granted for."""
    raw = request().decode().split("?>", 1)[1]
    hidden = ("+ADw-reg:echo+AD4-+ADw-reg:text+AD4-smuggled+ADw-/reg:text+AD4-"
              "+ADw-/reg:echo+AD4-")
    return raw.replace("<reg:getBirthRecord>", hidden + "<reg:getBirthRecord>", 1).encode()


@pytest.mark.parametrize("ctype", ["text/xml; charset=utf-8; charset=utf-7",
                                   'text/xml; charset="utf-8"; charset=utf-7',
                                   "text/xml; charset=utf-8; CHARSET=utf-7",
                                   "text/xml; charset=utf-8; charset*=utf-8''utf-7",
                                   "text/xml; charset=utf-7"])
def test_ambiguous_charset_signed_by_the_sender_is_refused(fed, ctype):
    """A member signs its own polyglot request: the server proxy refuses it before any
    backend could read the hidden operation."""
    from tunduk.server.core import exchange
    conf = fed.files.consumer.conf()
    signer = SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
    body = _smuggling(fed)
    signature = detached.sign_message(body, ctype, signer,
                                      request_hash=exchange.request_hash(body))
    reply = send(fed, body, signature=signature, content_type=ctype)
    assert reply.status == 500
    assert reply.fault_code == "Server.ServerProxy.InvalidContentType"
    assert b"smuggled" not in reply.body


def test_two_content_type_fields_are_refused_at_the_client_proxy(fed):
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(fed.client_url)
    body = _smuggling(fed)
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Type: text/xml; charset=utf-7\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert b"<faultcode>Client.InvalidContentType</faultcode>" in answer
    assert b"smuggled" not in answer.split(b"\r\n\r\n", 1)[1]


# ------------------------------------- the TLS key is not a message-signing key
def test_request_signed_with_the_consumers_tls_key_is_refused(fed):
    """The auth certificate has digitalSignature and the member's serialNumber, but it
    is a TLS certificate: whoever holds a server's TLS key must not sign for its
    member (outside review, item 3)."""
    c = fed.files.consumer
    body = signed(fed, SigningKey.load(c.auth_key, c.auth_cert))
    reply = send(fed, body)
    assert reply.fault_code == "Server.ServerProxy.IncorrectCertificate"
    assert "nonRepudiation" in reply.fault_string
