"""The consumer's and the provider's pipelines wired together in memory (no sockets)."""
from __future__ import annotations

import base64
import hashlib
import ssl

import pytest
from lxml import etree

from tests.pipeline_helpers import side
from tests.xroad_requests import request
from tunduk.server.core import errors
from tunduk.server.core import side as side_module
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.server_side import ServerSide
from tunduk.server.messagelog import NullLog

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


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
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    # the backend sees the client's message without any security additions
    assert b"Security" not in accepted.backend_body and b"requestDigest" not in \
        accepted.backend_body
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    out = etree.fromstring(consumer.finish(pending, signed, accepted.response_content_type, 200,
                                    accepted.response_signature))
    assert out.findtext(".//{*}ok") == "21205199900011"
    rh = out.find(".//{http://x-road.eu/xsd/xroad.xsd}requestHash")
    assert rh.text == base64.b64encode(hashlib.sha512(raw).digest()).decode()
    # each step returns its records for the edge to commit; nothing is logged here
    assert [r.direction for r in pending.records] == ["request", "response"]
    assert [r.direction for r in accepted.records] == ["request", "response"]
    assert consumer.log.records == provider.log.records == []


def test_with_the_log_off_no_record_is_even_built(pair, monkeypatch):
    consumer, provider, peer = pair

    class Off(NullLog):
        def log(self, record):
            raise AssertionError("a record was handed to a log that is off")
    consumer.log = provider.log = Off()
    built = []
    monkeypatch.setattr(side_module, "make_record",
                        lambda *a, **kw: built.append(kw) or None)
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    consumer.finish(pending, signed, accepted.response_content_type, 200,
                    accepted.response_signature)
    assert built == [] and pending.records == accepted.records == []


def test_response_to_another_request_is_refused(pair):
    consumer, provider, peer = pair
    first = consumer.prepare(request(), "text/xml")
    second = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(first.body, first.content_type, peer, first.signature)
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    with pytest.raises(XRoadError) as ei:
        consumer.finish(second, signed, accepted.response_content_type, 200,
                        accepted.response_signature)
    assert ei.value.code in (errors.INCONSISTENT_RESPONSE, errors.INVALID_REQUEST_HASH)


def test_service_changing_a_header_is_inconsistent(pair):
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    answer = etree.fromstring(accepted.backend_body)
    answer.find(".//{http://x-road.eu/xsd/xroad.xsd}userId").text = "KG000"
    with pytest.raises(XRoadError) as ei:
        provider.respond(accepted, etree.tostring(answer), "text/xml", 200)
    assert ei.value.code == errors.INCONSISTENT_RESPONSE


def test_replayed_request_from_other_peer_certificate(pair, make_federation):
    consumer, provider, _ = pair
    pending = consumer.prepare(request(), "text/xml")
    with pytest.raises(XRoadError) as ei:
        provider.accept(pending.body, pending.content_type, b"not a registered certificate",
                        pending.signature)
    assert ei.value.code == errors.SSL_AUTHENTICATION_FAILED


def _echoing_backend_answer(backend_request: bytes) -> bytes:
    """The answer of a service that echoes the X-Road headers itself (other prefixes,
    other whitespace), as the demo registry does."""
    req = etree.fromstring(backend_request)
    xrd = "http://x-road.eu/xsd/xroad.xsd"
    headers = [h for h in req.find(f"{{{SOAP}}}Header")
               if isinstance(h.tag, str) and h.tag.startswith(f"{{{xrd}}}")]
    answer = etree.fromstring(backend_answer(backend_request))
    header = etree.Element(f"{{{SOAP}}}Header", nsmap={"x": xrd})
    for h in headers:
        header.append(h)
    answer.insert(0, header)
    return etree.tostring(answer)


@pytest.mark.parametrize("answer", [backend_answer, _echoing_backend_answer])
def test_response_headers_are_those_a_fresh_read_finds(pair, answer):
    """respond() does not read the X-Road headers a second time after adding
    requestHash: what it logs and signs must equal a fresh read of what it sends."""
    from tunduk.server.core.envelope import parse_envelope
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), "text/xml")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    signed = provider.respond(accepted, answer(accepted.backend_body), "text/xml", 200)
    fresh = parse_envelope(signed, "text/xml", request=False).xroad
    req = accepted.request.xroad
    assert req.first_difference(fresh) is None
    assert fresh.request_hash == accepted.request_digest
    assert fresh.request_hash_algorithm == "http://www.w3.org/2001/04/xmlenc#sha512"
    assert [el.tag for el in fresh.elements][-1] == \
        "{http://x-road.eu/xsd/xroad.xsd}requestHash"
    record = accepted.records[-1]
    assert (record.direction, record.message_id, record.client) == \
        ("response", fresh.id, str(fresh.client))
    out = etree.fromstring(consumer.finish(pending, signed, accepted.response_content_type, 200,
                                    accepted.response_signature))
    assert out.findtext(".//{*}ok") == "21205199900011"


def _utf7(text: str) -> str:
    return "+" + base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=") + "-"


def _polyglot(declaration: str, utf7_hidden: bool) -> bytes:
    """A request whose bytes read as another operation in UTF-7 than in UTF-8."""
    import re
    raw = request().decode().split("?>", 1)[1]
    m = re.search(r"<reg:getBirthRecord>.*?</reg:getBirthRecord>", raw, re.S)
    hidden = "<reg:deletePerson><reg:personalCode>1</reg:personalCode></reg:deletePerson>"
    seen = ("<reg:getBirthRecord><reg:personalCode>21205199900011</reg:personalCode>"
            "</reg:getBirthRecord>")
    if utf7_hidden:   # read as UTF-8, the hidden part is mere text
        body = _utf7(hidden) + _utf7("<!--") + seen + _utf7("-->")
    else:             # read as UTF-7, the hidden part is text in UTF-8
        body = _utf7("<!--") + hidden + _utf7("-->") + seen
    return (declaration + raw[:m.start()] + body + raw[m.end():]).encode("ascii")


POLYGLOTS = [
    ("", "text/xml; charset=utf-7", False, "charset 'utf-7'"),
    ('<?xml version="1.0" encoding="UTF-7"?>', "text/xml; charset=utf-8", True,
     "charset 'UTF-7'"),
    ("", "text/xml; charset=utf-8; charset=utf-7", True, "charset is given more than once"),
    ("", 'text/xml; charset="utf-8"; charset=utf-7', True, "charset is given more than once"),
    ("", "text/xml; charset=utf-8; charset*=utf-7''", True, "RFC 2231"),
]


@pytest.mark.parametrize("declaration,content_type,utf7_hidden,words", POLYGLOTS)
def test_polyglot_charset_is_refused_by_the_consumer(pair, declaration, content_type,
                                                     utf7_hidden, words):
    """A backend parsing the bytes by another charset than tunduk would run another
    operation than the one access was checked for: refused, whoever reads it how."""
    consumer, _, _ = pair
    with pytest.raises(XRoadError) as ei:
        consumer.prepare(_polyglot(declaration, utf7_hidden), content_type)
    assert ei.value.code == errors.INVALID_CONTENT_TYPE
    assert words in ei.value.message


@pytest.mark.parametrize("declaration,content_type,utf7_hidden,words", POLYGLOTS)
def test_polyglot_charset_is_refused_by_the_provider_even_when_signed(
        pair, declaration, content_type, utf7_hidden, words):
    from tunduk.server.core import detached, exchange
    consumer, provider, peer = pair
    message = _polyglot(declaration, utf7_hidden)
    forged = detached.sign_message(message, content_type, consumer.signer,
                                   request_hash=exchange.request_hash(message))
    with pytest.raises(XRoadError) as ei:
        provider.accept(message, content_type, peer, forged)
    assert ei.value.code == errors.INVALID_CONTENT_TYPE
    assert words in ei.value.message


@pytest.mark.parametrize("content_type", ["TEXT/XML;Charset=\"UTF-8\"",
                                          "application/xml; charset=utf-8; x=1", "text/xml"])
def test_content_type_sent_on_is_written_by_tunduk(pair, content_type):
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), content_type)
    assert pending.content_type == "text/xml; charset=utf-8"
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    assert accepted.backend_content_type == "text/xml; charset=utf-8"


def test_legacy_charset_reaches_the_backend_as_utf8(pair):
    consumer, provider, peer = pair
    raw = request().decode().replace('encoding="UTF-8"', 'encoding="windows-1251"')
    pending = consumer.prepare(raw.encode("cp1251"), "text/xml; charset=CP1251")
    assert pending.content_type == "text/xml; charset=windows-1251"
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    assert accepted.backend_content_type == "text/xml; charset=utf-8"
    assert accepted.backend_body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_answer_with_an_ambiguous_content_type_is_refused(pair):
    """The provider's server is a peer: an answer the client could read otherwise is
    not passed on."""
    from tunduk.server.core import detached
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), "text/xml; charset=utf-8")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    signed = provider.respond(accepted, backend_answer(accepted.backend_body), "text/xml", 200)
    ctype = "text/xml; charset=utf-8; charset=utf-7"
    resigned = detached.sign_message(signed, ctype, provider.signer)
    with pytest.raises(XRoadError) as ei:
        consumer.finish(pending, signed, ctype, 200, resigned)
    assert ei.value.code == errors.INVALID_RESPONSE
    assert "charset is given more than once" in ei.value.message
    out = consumer.finish(pending, signed, accepted.response_content_type, 200,
                          accepted.response_signature)
    assert out == signed and pending.response_content_type == "text/xml; charset=utf-8"


def test_plain_utf8_request_reaches_the_backend_byte_for_byte(pair):
    consumer, provider, peer = pair
    raw = request()
    pending = consumer.prepare(raw, "text/xml; charset=utf-8")
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    assert accepted.backend_body == raw


def test_stated_request_hash_must_be_that_of_the_request(pair):
    from tunduk.server.core import detached
    consumer, provider, peer = pair
    pending = consumer.prepare(request(), "text/xml; charset=utf-8")
    other = base64.b64encode(hashlib.sha512(b"another request").digest()).decode()
    forged = detached.sign_message(pending.body, pending.content_type, consumer.signer,
                                   request_hash=other)
    with pytest.raises(XRoadError) as ei:
        provider.accept(pending.body, pending.content_type, peer, forged)
    assert ei.value.code == errors.INVALID_REQUEST_HASH


def test_the_servers_own_xml_limits_apply(make_federation):
    """[limits] of server.toml, not only the defaults, bound what a message may hold."""
    import dataclasses

    from tunduk.server.core.envelope import XmlLimits
    fed = make_federation()
    consumer = side(ClientSide, fed.consumer)
    consumer.conf = dataclasses.replace(consumer.conf,
                                        xml_limits=XmlLimits(max_attributes=2))
    raw = request().replace(b"<reg:personalCode>",
                            b'<reg:personalCode a="1" b="2" c="3">', 1)
    with pytest.raises(XRoadError) as ei:
        consumer.prepare(raw, "text/xml")
    assert ei.value.code == errors.INVALID_XML
    assert "more attributes than 2 (limit max_attributes)" in ei.value.message
