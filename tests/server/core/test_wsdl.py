"""prepare_wsdl: endpoint, offline schema imports, X-Road header parts, xrd:version."""
from __future__ import annotations

import pytest
import zeep
from lxml import etree
from zeep.transports import Transport

from tests.fixtures.wsgi_server import schema_app, serve_wsgi
from tunduk.server.core import errors
from tunduk.server.core.identifiers import XROAD_NS
from tunduk.server.core.wsdl import add_xroad_headers, prepare_wsdl

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"
HEADERS = ["client", "service", "id", "userId", "issue", "protocolVersion"]

# An X-Road style WSDL as providers write it: imports the header schema from the
# internet, declares the headers, already has a version.
XROAD_STYLE = f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions targetNamespace="http://producer.example.kg" xmlns:wsdl="{WSDL}"
    xmlns:tns="http://producer.example.kg" xmlns:xrd="{XROAD_NS}" xmlns:xs="{XSD}"
    xmlns:soap="{SOAP}">
  <wsdl:types>
    <xs:schema targetNamespace="http://producer.example.kg" elementFormDefault="qualified">
      <xs:import namespace="{XROAD_NS}" schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>
      <xs:import namespace="http://x-road.eu/xsd/identifiers" schemaLocation="../common/identifiers.xsd"/>
      <xs:import namespace="urn:other" schemaLocation="http://example.org/other.xsd"/>
      <xs:element name="getThing"><xs:complexType><xs:sequence>
        <xs:element name="code" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="getThingResponse"><xs:complexType><xs:sequence>
        <xs:element name="value" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="getThing"><wsdl:part name="getThing" element="tns:getThing"/></wsdl:message>
  <wsdl:message name="getThingResponse"><wsdl:part name="getThingResponse" element="tns:getThingResponse"/></wsdl:message>
  <wsdl:message name="requestHeader">
    {''.join(f'<wsdl:part name="{h}" element="xrd:{h}"/>' for h in HEADERS)}
  </wsdl:message>
  <wsdl:portType name="port"><wsdl:operation name="getThing">
    <wsdl:input message="tns:getThing"/><wsdl:output message="tns:getThingResponse"/>
  </wsdl:operation></wsdl:portType>
  <wsdl:binding name="binding" type="tns:port">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="getThing">
      <soap:operation soapAction="" style="document"/>
      <xrd:version>v1</xrd:version>
      <wsdl:input><soap:body use="literal"/>
        {''.join(f'<soap:header message="tns:requestHeader" part="{h}" use="literal"/>' for h in HEADERS)}
      </wsdl:input>
      <wsdl:output><soap:body use="literal"/>
        {''.join(f'<soap:header message="tns:requestHeader" part="{h}" use="literal"/>' for h in HEADERS)}
      </wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="svc"><wsdl:port name="p" binding="tns:binding">
    <soap:address location="http://internal-backend.corp:8080/thing"/></wsdl:port></wsdl:service>
</wsdl:definitions>""".encode()

# A bare WSDL with no X-Road anything (as a non-X-Road backend or spyne produces).
BARE = XROAD_STYLE
for h in HEADERS:
    BARE = BARE.replace(f'<soap:header message="tns:requestHeader" part="{h}" use="literal"/>'.encode(), b"")
BARE = BARE.replace(f'<xs:import namespace="{XROAD_NS}" schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>'.encode(), b"")
BARE = BARE.replace(b"<xrd:version>v1</xrd:version>", b"")
BARE = BARE.replace(b'<wsdl:message name="requestHeader">', b'<wsdl:message name="unused">')


def _header_parts(root, io):
    op = root.find(f"{{{WSDL}}}binding/{{{WSDL}}}operation")
    return [h.get("part") for h in op.find(f"{{{WSDL}}}{io}").iter(f"{{{SOAP}}}header")]


def _locations(root):
    return [el.get("schemaLocation") for el in root.iter(f"{{{XSD}}}import")]


def test_xroad_style_wsdl_is_rewritten_for_offline_use():
    out = etree.fromstring(prepare_wsdl(XROAD_STYLE, soap_address="http://ss.local:8080/",
                                        schema_base_url="http://ss.local:8080/xsd/",
                                        service_version="v2"))
    assert _locations(out) == ["http://ss.local:8080/xsd/xroad.xsd",
                               "http://ss.local:8080/xsd/identifiers.xsd",
                               "http://example.org/other.xsd"]
    assert [a.get("location") for a in out.iter(f"{{{SOAP}}}address")] == ["http://ss.local:8080/"]
    assert [v.text for v in out.iter(f"{{{XROAD_NS}}}version")] == ["v2"]
    # Already declared: nothing duplicated, no extra message.
    assert _header_parts(out, "input") == HEADERS and _header_parts(out, "output") == HEADERS
    assert len(out.findall(f"{{{WSDL}}}message")) == 3


def test_version_left_alone_when_not_given():
    out = etree.fromstring(prepare_wsdl(XROAD_STYLE, soap_address="http://a/",
                                        schema_base_url="http://a/xsd"))
    assert [v.text for v in out.iter(f"{{{XROAD_NS}}}version")] == ["v1"]
    assert _locations(out)[0] == "http://a/xsd/xroad.xsd"  # base without trailing slash


def test_bare_wsdl_gets_header_parts_import_and_version_after_soap_operation():
    out = etree.fromstring(prepare_wsdl(BARE, soap_address="http://a/",
                                        schema_base_url="http://a/xsd/", service_version="v1"))
    assert _header_parts(out, "input") == HEADERS and _header_parts(out, "output") == HEADERS
    assert "http://a/xsd/xroad.xsd" in _locations(out)
    op = out.find(f"{{{WSDL}}}binding/{{{WSDL}}}operation")
    assert [etree.QName(c).localname for c in op][:2] == ["operation", "version"]


def test_add_xroad_headers_is_idempotent():
    once = add_xroad_headers(BARE)
    twice = add_xroad_headers(once)
    root = etree.fromstring(twice)
    assert _header_parts(root, "input") == HEADERS
    assert len(root.findall(f"{{{WSDL}}}message")) == 4


@pytest.mark.parametrize("doc", [b"<notwsdl/>", b"not xml at all",
                                 b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/2"/>'])
def test_non_wsdl_is_rejected(doc):
    with pytest.raises(errors.XRoadError) as exc:
        prepare_wsdl(doc, soap_address="http://a/", schema_base_url="http://a/")
    assert exc.value.code == errors.WSDL_FAILED


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doc = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
           f'<wsdl:definitions xmlns:wsdl="{WSDL}"><wsdl:documentation>&x;</wsdl:documentation>'
           f'</wsdl:definitions>').encode()
    out = prepare_wsdl(doc, soap_address="http://a/", schema_base_url="http://a/")
    assert b"TOPSECRET" not in out


class LocalOnlyTransport(Transport):
    """Refuses any network host but 127.0.0.1 and remembers what it fetched."""

    def __init__(self):
        super().__init__()
        self.fetched = []

    def load(self, url):
        if "://" in url:
            assert url.startswith("http://127.0.0.1:"), f"tried to fetch {url}"
        self.fetched.append(url)
        return super().load(url)


def test_prepared_wsdl_loads_in_zeep_without_internet(tmp_path):
    with serve_wsgi(schema_app) as base:
        out = prepare_wsdl(XROAD_STYLE.replace(b"../common/identifiers.xsd",
                                               b"http://x-road.eu/xsd/identifiers.xsd")
                           .replace(b'<xs:import namespace="urn:other" schemaLocation="http://example.org/other.xsd"/>', b""),
                           soap_address="http://ss.local/", schema_base_url=base + "/xsd/")
        path = tmp_path / "svc.wsdl"
        path.write_bytes(out)
        transport = LocalOnlyTransport()
        client = zeep.Client(str(path), transport=transport)
        assert base + "/xsd/xroad.xsd" in transport.fetched
        assert base + "/xsd/xml.xsd" in transport.fetched
        op = client.service._binding._operations["getThing"]
        sig = op.input.header.signature()
        assert "client: {http://x-road.eu/xsd/identifiers}XRoadClientIdentifierType" in sig
        assert "protocolVersion: xsd:string" in sig
        assert client.service._binding_options["address"] == "http://ss.local/"
