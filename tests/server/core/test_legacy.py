"""Legacy aliases: X-Road headers added to plain SOAP, and removed from answers."""
from __future__ import annotations

import pytest

from tests.xroad_requests import request
from tunduk.server.core.envelope import parse_envelope
from tunduk.server.core.errors import INVALID_MESSAGE, INVALID_SOAP, XRoadError
from tunduk.server.core.identifiers import XROAD_NS, ClientId, ServiceId
from tunduk.server.core.legacy import add_headers, strip_headers

PLAIN = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
         b'<s:Header><x:trace xmlns:x="urn:x">1</x:trace></s:Header>'
         b'<s:Body><getBirthRecord/></s:Body></s:Envelope>')
CLIENT = ClientId.parse("KG/GOV/70000002/centre")
SERVICE = ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord/v1")


def test_add_headers_makes_a_valid_xroad_request():
    env = parse_envelope(add_headers(PLAIN, "text/xml", CLIENT, SERVICE, "abc"))
    assert env.xroad.client == CLIENT and env.xroad.service == SERVICE
    assert env.xroad.id == "abc" and env.xroad.protocol_version == "4.0"
    # other headers stay, after the X-Road ones
    assert env.header[-1].tag == "{urn:x}trace"


def test_fresh_ids_and_header_created_when_absent():
    plain = PLAIN.replace(b'<s:Header><x:trace xmlns:x="urn:x">1</x:trace></s:Header>', b"")
    a = parse_envelope(add_headers(plain, None, CLIENT, SERVICE))
    b = parse_envelope(add_headers(plain, None, CLIENT, SERVICE))
    assert a.xroad.id != b.xroad.id and len(a.xroad.id) == 36


def test_request_with_xroad_headers_is_refused():
    with pytest.raises(XRoadError) as info:
        add_headers(request(), None, CLIENT, SERVICE)
    assert info.value.code == INVALID_MESSAGE
    assert "xroad:client" in info.value.message


def test_not_soap_is_refused():
    with pytest.raises(XRoadError) as info:
        add_headers(b"<hello/>", None, CLIENT, SERVICE)
    assert info.value.code == INVALID_SOAP


def test_strip_headers():
    out = strip_headers(request())
    assert b"<xrd:" not in out and b"personalCode" in out
    kept = strip_headers(add_headers(PLAIN, None, CLIENT, SERVICE))
    assert b"urn:x" in kept and b"<xrd:client" not in kept
    assert strip_headers(b"not xml") == b"not xml"
    assert XROAD_NS.encode() not in strip_headers(add_headers(
        PLAIN.replace(b'<s:Header><x:trace xmlns:x="urn:x">1</x:trace></s:Header>', b""),
        None, CLIENT, SERVICE)).replace(b'xmlns:xrd="%s"' % XROAD_NS.encode(), b"")
