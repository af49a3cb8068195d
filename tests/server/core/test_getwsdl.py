"""getWsdl request/response bodies (WSDL carried base64 inside the signed Body)."""
from __future__ import annotations

import pytest
from lxml import etree

from tunduk.server.core import getwsdl
from tunduk.server.core.envelope import parse_envelope
from tunduk.server.core.errors import INVALID_BODY, INVALID_RESPONSE, XRoadError
from tunduk.server.core.identifiers import ClientId, ServiceId

OWNER = ClientId("KG", "GOV", "70000002")
SERVICE = ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord/v1")
WSDL = b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>'


def test_request_names_the_getwsdl_service_and_the_wanted_one():
    env = parse_envelope(getwsdl.request_envelope(OWNER, SERVICE, "m1"))
    assert env.xroad.client == OWNER
    assert str(env.xroad.service) == "KG/GOV/70000001/registry/getWsdl"
    assert getwsdl.requested_service(env) == SERVICE


def test_requested_service_without_code_is_invalid_body():
    raw = getwsdl.request_envelope(OWNER, SERVICE).replace(b"xrd:serviceCode>", b"xrd:other>")
    with pytest.raises(XRoadError) as info:
        getwsdl.requested_service(parse_envelope(raw))
    assert info.value.code == INVALID_BODY


def test_response_round_trip():
    raw = getwsdl.response_envelope(SERVICE, WSDL)
    answer = getwsdl.read_response(etree.fromstring(raw))
    assert answer == getwsdl.WsdlAnswer("getBirthRecord", "v1", WSDL)


def test_response_without_wsdl_or_bad_base64():
    raw = getwsdl.response_envelope(SERVICE, WSDL)
    root = etree.fromstring(raw)
    el = root.find(f".//{getwsdl.WSDL_ELEMENT}")
    el.text = "!!not base64!!"
    with pytest.raises(XRoadError) as info:
        getwsdl.read_response(root)
    assert info.value.code == INVALID_RESPONSE
    el.getparent().remove(el)
    with pytest.raises(XRoadError):
        getwsdl.read_response(root)
