"""Which certificate may sign a message, in memory: a security server's TLS (auth) key
must never make a signature the other side accepts (outside review, item 3)."""
from __future__ import annotations

import ssl

import pytest

from tests.fixtures.certs_for_signing import issue_on_disk
from tests.pipeline_helpers import side
from tests.xroad_requests import request
from tunduk.server import pki
from tunduk.server.core import errors
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.server_side import ServerSide
from tunduk.server.core.signing import SigningKey
from tunduk.server.devfed import CONSUMER, PROVIDER

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def _answer(backend_request: bytes) -> bytes:
    return (b'<s:Envelope xmlns:s="%s"><s:Body><r:getBirthRecordResponse '
            b'xmlns:r="http://registry.demo.tunduk.kg/"><r:ok>yes</r:ok>'
            b'</r:getBirthRecordResponse></s:Body></s:Envelope>' % SOAP.encode())


def _refused(fn, *args) -> XRoadError:
    with pytest.raises(XRoadError) as info:
        fn(*args)
    assert info.value.code == errors.INCORRECT_CERTIFICATE, info.value.message
    return info.value


def _dual_use(dev_ca, tmp_path, member) -> tuple[SigningKey, dict]:
    """A certificate of ``member`` that is both a signing certificate (nonRepudiation)
    and a TLS certificate, from the federation CA, and a [[servers]] entry that
    registers it as the auth certificate of a second server of that member."""
    key, cert = tmp_path / "dual.key", tmp_path / "dual.pem"
    issue_on_disk(dev_ca.key, dev_ca.cert, str(member), key, cert,
                  non_repudiation=True, tls=True)
    server = {"owner": str(member), "code": "ss2", "address": "127.0.0.1:9",
              "auth_fingerprints": [pki.fingerprint_sha256(cert.read_bytes())]}
    return SigningKey.load(key, cert), server


def test_request_signed_with_the_consumers_tls_key_is_refused(make_federation):
    fed = make_federation()
    c = fed.consumer
    consumer = side(ClientSide, c)
    consumer.signer = SigningKey.load(c.auth_key, c.auth_cert)
    provider = side(ServerSide, fed.provider)
    pending = consumer.prepare(request(), "text/xml")
    err = _refused(provider.accept, pending.body, pending.content_type,
                   _der(c.auth_cert), pending.signature)
    assert "nonRepudiation" in err.message and "signing certificate" in err.message


def test_request_signed_with_a_registered_auth_certificate_is_refused_whatever_its_usages(
        make_federation, dev_ca, tmp_path):
    """Even with nonRepudiation, a certificate registered as any server's TLS
    certificate signs nothing."""
    signer, server = _dual_use(dev_ca, tmp_path, CONSUMER)
    fed = make_federation(extra_servers=[server])
    consumer = side(ClientSide, fed.consumer)
    consumer.signer = signer
    provider = side(ServerSide, fed.provider)
    pending = consumer.prepare(request(), "text/xml")
    err = _refused(provider.accept, pending.body, pending.content_type,
                   _der(fed.consumer.auth_cert), pending.signature)
    assert "TLS (auth) certificate of security server SERVER:KG/GOV/70000002/ss2" \
        in err.message


def test_response_signed_with_the_providers_tls_key_is_refused(make_federation):
    fed = make_federation()
    p = fed.provider
    consumer, provider = side(ClientSide, fed.consumer), side(ServerSide, p)
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type,
                               _der(fed.consumer.auth_cert), pending.signature)
    provider.signer = SigningKey.load(p.auth_key, p.auth_cert)
    signed = provider.respond(accepted, _answer(accepted.backend_body), "text/xml", 200)
    _refused(consumer.finish, pending, signed, accepted.response_content_type, 200,
             accepted.response_signature)


def test_response_signed_with_a_registered_auth_certificate_is_refused(
        make_federation, dev_ca, tmp_path):
    signer, server = _dual_use(dev_ca, tmp_path, PROVIDER)
    fed = make_federation(extra_servers=[server])
    consumer, provider = side(ClientSide, fed.consumer), side(ServerSide, fed.provider)
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type,
                               _der(fed.consumer.auth_cert), pending.signature)
    provider.signer = signer
    signed = provider.respond(accepted, _answer(accepted.backend_body), "text/xml", 200)
    err = _refused(consumer.finish, pending, signed, accepted.response_content_type, 200,
                   accepted.response_signature)
    assert "SERVER:KG/GOV/70000001/ss2" in err.message


def test_the_members_signing_certificate_is_still_accepted(make_federation):
    fed = make_federation()
    consumer, provider = side(ClientSide, fed.consumer), side(ServerSide, fed.provider)
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type,
                               _der(fed.consumer.auth_cert), pending.signature)
    signed = provider.respond(accepted, _answer(accepted.backend_body), "text/xml", 200)
    consumer.finish(pending, signed, accepted.response_content_type, 200,
                    accepted.response_signature)
