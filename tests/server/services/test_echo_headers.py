"""Copying X-Road request headers into responses."""
from __future__ import annotations

from lxml import etree

from tunduk.server.core.identifiers import XROAD_NS
from tunduk.server.services.echo_headers import echo_into_response, request_xroad_headers

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
REQ = f"""<s:Envelope xmlns:s="{ENV}" xmlns:x="{XROAD_NS}"><s:Header>
<x:id>1</x:id><other xmlns="urn:o">keep?</other><x:userId>KG1</x:userId>
<x:protocolVersion>4.0</x:protocolVersion></s:Header><s:Body><a/></s:Body></s:Envelope>""".encode()


def test_only_xroad_headers_in_document_order():
    got = request_xroad_headers(REQ)
    assert [(etree.QName(e).localname, e.text) for e in got] == [
        ("id", "1"), ("userId", "KG1"), ("protocolVersion", "4.0")]


def test_not_soap_or_not_xml_gives_no_headers():
    assert request_xroad_headers(b"<not-soap/>") == []
    assert request_xroad_headers(b"garbage <") == []


def test_header_created_when_response_has_none():
    resp = f'<s:Envelope xmlns:s="{ENV}"><s:Body><r/></s:Body></s:Envelope>'.encode()
    out = etree.fromstring(echo_into_response(resp, request_xroad_headers(REQ)))
    assert etree.QName(out[0]).localname == "Header"
    assert [etree.QName(e).localname for e in out[0]] == ["id", "userId", "protocolVersion"]


def test_service_values_are_replaced_and_other_headers_kept():
    resp = f"""<s:Envelope xmlns:s="{ENV}" xmlns:x="{XROAD_NS}"><s:Header>
      <x:id>forged</x:id><mine xmlns="urn:m"/></s:Header><s:Body/></s:Envelope>""".encode()
    out = etree.fromstring(echo_into_response(resp, request_xroad_headers(REQ)))
    hdr = out.find(f"{{{ENV}}}Header")
    assert [(etree.QName(e).localname, e.text) for e in hdr] == [
        ("id", "1"), ("userId", "KG1"), ("protocolVersion", "4.0"), ("mine", None)]


def test_non_xml_response_passes_through():
    assert echo_into_response(b"oops", request_xroad_headers(REQ)) == b"oops"
