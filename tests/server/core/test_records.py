"""Message log records built by the pipelines: the Body digest is the one of the
logged envelope, whether computed here or taken over from signing/verification."""
from __future__ import annotations

import hashlib
import ssl

import pytest
from lxml import etree

from tests.pipeline_helpers import side as _side
from tests.xroad_requests import request
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.envelope import parse_envelope
from tunduk.server.core.records import body_digest_hex, make_record
from tunduk.server.core.server_side import ServerSide

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _answer(backend_request: bytes) -> bytes:
    req = etree.fromstring(backend_request)
    return (b'<s:Envelope xmlns:s="%s"><s:Body><r:getBirthRecordResponse '
            b'xmlns:r="http://registry.demo.tunduk.kg/"><r:ok>%s</r:ok>'
            b'</r:getBirthRecordResponse></s:Body></s:Envelope>'
            % (SOAP.encode(), req.findtext(".//{*}personalCode").encode()))


def _logged_body_digest(envelope: bytes) -> str:
    """Recomputed from the logged bytes alone, as ``tunduk log verify`` does."""
    body = etree.fromstring(envelope).find(f"{{{SOAP}}}Body")
    return hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_every_record_of_an_exchange_has_the_digest_of_its_envelope(make_federation,
                                                                      key_type):
    fed = make_federation(key_type=key_type)
    consumer, provider = _side(ClientSide, fed.consumer), _side(ServerSide, fed.provider)
    peer = ssl.PEM_cert_to_DER_cert(fed.consumer.auth_cert.read_text())
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, "text/xml", peer)
    signed = provider.respond(accepted, _answer(accepted.backend_body), "text/xml", 200)
    consumer.finish(pending, signed, "text/xml", 200)
    records = consumer.log.records + provider.log.records
    assert len(records) == 4
    for rec in records:
        assert rec.body_sha256 == _logged_body_digest(rec.envelope), rec.direction
    # the request's Body is the same on both sides, the response's too
    assert consumer.log.records[0].body_sha256 == provider.log.records[0].body_sha256
    assert consumer.log.records[1].body_sha256 == provider.log.records[1].body_sha256
    assert consumer.log.records[0].body_sha256 != consumer.log.records[1].body_sha256


def test_make_record_computes_the_digest_when_not_given():
    env = parse_envelope(request(), "text/xml")
    rec = make_record(env, b"raw", direction="request", side="client", cert_der=b"c")
    assert rec.body_sha256 == body_digest_hex(env) == _logged_body_digest(request())
    given = make_record(env, b"raw", direction="request", side="client", cert_der=b"c",
                        body_sha256="ab" * 32)
    assert given.body_sha256 == "ab" * 32
