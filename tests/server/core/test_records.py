"""Message log records built by the pipelines: each holds the exact signed bytes and
their detached signature, which verify offline as ``tunduk log verify`` does, and the
Body digest of those bytes."""
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
from tunduk.server.messagelog import envelope_check

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _answer(backend_request: bytes) -> bytes:
    req = etree.fromstring(backend_request)
    return (b'<s:Envelope xmlns:s="%s"><s:Body><r:getBirthRecordResponse '
            b'xmlns:r="http://registry.demo.tunduk.kg/"><r:ok>%s</r:ok>'
            b'</r:getBirthRecordResponse></s:Body></s:Envelope>'
            % (SOAP.encode(), req.findtext(".//{*}personalCode").encode()))


def _body_digest(soap: bytes) -> str:
    body = etree.fromstring(soap).find(f"{{{SOAP}}}Body")
    return hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_every_record_of_an_exchange_has_the_digest_of_its_envelope(make_federation,
                                                                      key_type):
    fed = make_federation(key_type=key_type)
    consumer, provider = _side(ClientSide, fed.consumer), _side(ServerSide, fed.provider)
    peer = ssl.PEM_cert_to_DER_cert(fed.consumer.auth_cert.read_text())
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    signed = provider.respond(accepted, _answer(accepted.backend_body), "text/xml", 200)
    consumer.finish(pending, signed, accepted.response_content_type, 200,
                    accepted.response_signature)
    ours, theirs = pending.records, accepted.records
    records = ours + theirs
    assert len(records) == 4
    for rec in records:
        # recomputed from the logged container alone, as ``tunduk log verify`` does
        assert rec.body_sha256 in envelope_check.body_hashes(rec.envelope), rec.direction
        assert envelope_check.check_signature(rec.envelope, rec.signature_cert_der) is None
    # what was logged is what was sent: the client's bytes, the provider's answer
    assert b"<tdk:message" in records[0].envelope
    assert ours[1].envelope == theirs[1].envelope
    # the request's Body is the same on both sides, the response's too
    assert ours[0].body_sha256 == theirs[0].body_sha256
    assert ours[1].body_sha256 == theirs[1].body_sha256
    assert ours[0].body_sha256 != ours[1].body_sha256


def test_make_record_computes_the_body_digest():
    env = parse_envelope(request(), "text/xml")
    rec = make_record(env, request(), direction="request", side="client", cert_der=b"c",
                      content_type="text/xml", signature=b"<s/>")
    assert rec.body_sha256 == body_digest_hex(env) == _body_digest(request())


def test_a_changed_byte_in_a_logged_message_is_reported(make_federation):
    fed = make_federation()
    consumer = _side(ClientSide, fed.consumer)
    rec = consumer.prepare(request(), "text/xml").records[0]
    assert envelope_check.check_signature(rec.envelope, rec.signature_cert_der) is None
    import base64
    import re
    m = re.search(rb"<tdk:message[^>]*>([^<]*)</tdk:message>", rec.envelope)
    changed = base64.b64decode(m.group(1)).replace(b"21205199900011", b"21205199900012")
    tampered = rec.envelope.replace(m.group(1), base64.b64encode(changed))
    why = envelope_check.check_signature(tampered, rec.signature_cert_der)
    assert why and "the message was changed after signing" in why
    other = envelope_check.check_signature(rec.envelope, b"another certificate")
    assert other and "not the logged signer certificate" in other
