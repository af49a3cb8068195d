"""The consumer's and the provider's pipelines wired together in memory (no sockets)."""
from __future__ import annotations

import base64
import hashlib
import ssl

import pytest
from lxml import etree

from tests.xroad_requests import request
from tunduk.server.core import errors
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.server_side import ServerSide
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.messagelog import NullLog

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


class RecordingLog(NullLog):
    def __init__(self):
        self.records = []

    def log(self, record):
        self.records.append(record)


def side(cls, files):
    conf = files.conf()
    return cls(conf, SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert),
               TrustAnchor.from_pem(conf.federation.ca_certs_pem), RecordingLog())


@pytest.fixture
def pair(make_federation):
    fed = make_federation()
    consumer, provider = side(ClientSide, fed.consumer), side(ServerSide, fed.provider)
    peer_der = ssl.PEM_cert_to_DER_cert(fed.consumer.auth_cert.read_text())
    return consumer, provider, peer_der


def backend_answer(backend_request: bytes) -> bytes:
    req = etree.fromstring(backend_request)
    return (b'<s:Envelope xmlns:s="%s"><s:Body><r:getBirthRecordResponse '
            b'xmlns:r="http://registry.demo.tunduk.kg/"><r:ok>%s</r:ok>'
            b'</r:getBirthRecordResponse></s:Body></s:Envelope>'
            % (SOAP.encode(), req.findtext(".//{*}personalCode").encode()))


def test_request_and_response_cross_both_pipelines(pair):
    consumer, provider, peer = pair
    raw = request()
    pending = consumer.prepare(raw, "text/xml")
    accepted = provider.accept(pending.body, "text/xml; charset=utf-8", peer)
    # the backend sees the client's message without any security additions
    assert b"Security" not in accepted.backend_body and b"requestDigest" not in \
        accepted.backend_body
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    out = etree.fromstring(consumer.finish(pending, signed, "text/xml", 200))
    assert out.findtext(".//{*}ok") == "21205199900011"
    rh = out.find(".//{http://x-road.eu/xsd/xroad.xsd}requestHash")
    assert rh.text == base64.b64encode(hashlib.sha512(raw).digest()).decode()
    assert [r.direction for r in consumer.log.records] == ["request", "response"]
    assert [r.direction for r in provider.log.records] == ["request", "response"]


def test_response_to_another_request_is_refused(pair):
    consumer, provider, peer = pair
    first = consumer.prepare(request(), "text/xml")
    second = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(first.body, "text/xml", peer)
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    with pytest.raises(XRoadError) as ei:
        consumer.finish(second, signed, "text/xml", 200)
    assert ei.value.code in (errors.INCONSISTENT_RESPONSE, errors.INVALID_REQUEST_HASH)


def test_service_changing_a_header_is_inconsistent(pair):
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, "text/xml", peer)
    answer = etree.fromstring(accepted.backend_body)
    answer.find(".//{http://x-road.eu/xsd/xroad.xsd}userId").text = "KG000"
    with pytest.raises(XRoadError) as ei:
        provider.respond(accepted, etree.tostring(answer), "text/xml", 200)
    assert ei.value.code == errors.INCONSISTENT_RESPONSE


def test_replayed_request_from_other_peer_certificate(pair, make_federation):
    consumer, provider, _ = pair
    pending = consumer.prepare(request(), "text/xml")
    with pytest.raises(XRoadError) as ei:
        provider.accept(pending.body, "text/xml", b"not a registered certificate")
    assert ei.value.code == errors.SSL_AUTHENTICATION_FAILED
