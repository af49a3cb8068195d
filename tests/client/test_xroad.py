"""tunduk.client: a real zeep client against a real socket fills the X-Road headers."""
from __future__ import annotations

import urllib.request
import uuid
from urllib.parse import parse_qs

import pytest
from lxml import etree
from zeep.plugins import HistoryPlugin

from tests.fixtures.wsgi_server import schema_app, serve_wsgi
from tunduk.client import (ClientError, ClientProxyError, ServerProxyError, ServiceFault,
                           XRoadFault, make_client, wsdl_url)
from tunduk.client.errors import classify
from tunduk.server.core.identifiers import (XROAD_NS, ClientId, ServiceId, client_from_xml,
                                            service_from_xml)
from tunduk.server.core.wsdl import prepare_wsdl
from tunduk.server.services.civil_registry import wsgi_app

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class Site:
    """Security-server-like test site: /wsdl, /xsd/*, POST / → registry (recorded)."""

    def __init__(self) -> None:
        self.wsdl = b""
        self.bodies: list[bytes] = []
        self.wsdl_queries: list[dict] = []
        self.fault: bytes | None = None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/xsd/"):
            return schema_app(environ, start_response)
        if path == "/wsdl" or path == "/prepared.wsdl":
            self.wsdl_queries.append(parse_qs(environ.get("QUERY_STRING", "")))
            start_response("200 OK", [("Content-Type", "text/xml")])
            return [self.wsdl]
        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.bodies.append(body)
            if self.fault is not None:
                start_response("500 Internal Server Error",
                               [("Content-Type", "text/xml; charset=utf-8")])
                return [self.fault]
            environ["wsgi.input"] = __import__("io").BytesIO(body)
        return wsgi_app(environ, start_response)


@pytest.fixture()
def site():
    s = Site()
    with serve_wsgi(s) as base:
        raw = urllib.request.urlopen(base + "/?wsdl", timeout=10).read()
        # soap:address deliberately elsewhere: tests show where calls really go.
        s.wsdl = prepare_wsdl(raw, soap_address=base + "/", schema_base_url=base + "/xsd/",
                              service_version="v1")
        s.base = base
        yield s


def _headers(body: bytes) -> list[etree._Element]:
    return [el for el in etree.fromstring(body).find(f"{{{ENV}}}Header")
            if etree.QName(el).namespace == XROAD_NS]


def test_every_call_carries_client_service_fresh_id_user_and_version(site):
    history = HistoryPlugin()
    c = make_client(site.base + "/prepared.wsdl", "KG/GOV/70000001/registry",
                    "KG/COM/555/portal", "KG12345678901", issue="case-9", plugins=[history])
    res = c.service.getBirthRecord(personalCode="21505198800011")
    assert res.body.getBirthRecordResult.firstName == "Aibek"
    c.service.echo("x")
    first, second = (_headers(b) for b in site.bodies)
    assert [etree.QName(e).localname for e in first] == [
        "client", "service", "id", "userId", "issue", "protocolVersion"]
    assert client_from_xml(first[0]) == ClientId.parse("KG/COM/555/portal")
    assert service_from_xml(first[1]) == ServiceId.parse(
        "KG/GOV/70000001/registry/getBirthRecord")
    assert service_from_xml(second[1]).service_code == "echo"
    assert uuid.UUID(first[2].text).version == 4
    assert first[2].text != second[2].text
    assert [e.text for e in first[3:]] == ["KG12345678901", "case-9", "4.0"]
    # Plugins given by the caller see the final envelope.
    sent = history.last_sent["envelope"]
    assert sent.findtext(f".//{{{XROAD_NS}}}protocolVersion") == "4.0"
    # The response echoes our headers.
    assert res.header.id == first[2].text


def test_full_service_id_puts_version_and_no_user_id_leaves_it_out(site):
    c = make_client(site.base + "/prepared.wsdl",
                    ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord/v1"),
                    ClientId.parse("KG/COM/555"))
    c.service.getResidenceRecord("21505198800011")
    hdrs = _headers(site.bodies[-1])
    assert [etree.QName(e).localname for e in hdrs] == [
        "client", "service", "id", "protocolVersion"]
    svc = service_from_xml(hdrs[1])
    assert (svc.service_code, svc.version) == ("getResidenceRecord", "v1")
    assert client_from_xml(hdrs[0]).object_type == "MEMBER"


def test_security_server_base_url_builds_wsdl_query_and_posts_there(site):
    moved = site.wsdl.replace(site.base.encode() + b"/\"", b"http://unreachable.invalid/\"")
    assert moved != site.wsdl
    site.wsdl = moved
    c = make_client(site.base, "KG/GOV/70000001/registry/getBirthRecord/v1", "KG/COM/555/portal")
    assert site.wsdl_queries[-1] == {
        "xRoadInstance": ["KG"], "memberClass": ["GOV"], "memberCode": ["70000001"],
        "subsystemCode": ["registry"], "serviceCode": ["getBirthRecord"], "version": ["v1"]}
    assert c.service.echo("hi").body.echoResult == "hi"
    assert len(site.bodies) == 1


def test_security_server_url_needs_full_service_id(site):
    with pytest.raises(ValueError):
        make_client(site.base, "KG/GOV/70000001/registry", "KG/COM/555/portal")


def test_wsdl_url_omits_absent_subsystem_and_version():
    url = wsdl_url("http://ss:8080/", ServiceId.parse("KG/GOV/1//getX"))
    assert url == ("http://ss:8080/wsdl?xRoadInstance=KG&memberClass=GOV&memberCode=1"
                   "&serviceCode=getX")


def test_service_fault_is_typed_and_knows_the_message_id(site):
    c = make_client(site.base + "/prepared.wsdl", "KG/GOV/70000001/registry", "KG/COM/555/portal")
    with pytest.raises(ServiceFault) as exc:
        c.service.getBirthRecord("00000000000001")
    err = exc.value
    assert err.code == "Client.NotFound"
    assert err.message == "No birth record for personal code 00000000000001"
    assert err.message_id == _headers(site.bodies[-1])[2].text


def _xroad_fault(code: str, detail_id: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}"><SOAP-ENV:Body><SOAP-ENV:Fault>
<faultcode>{code}</faultcode><faultstring>It failed</faultstring><faultactor></faultactor>
<detail><faultDetail xmlns="">{detail_id}</faultDetail></detail>
</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>""".encode()


@pytest.mark.parametrize("code,cls", [
    ("Server.ClientProxy.ServiceFailed.MissingBody", ClientProxyError),
    ("Server.ServerProxy.AccessDenied", ServerProxyError),
    ("Client.InvalidSoap", ClientError),
    ("SOAP-ENV:Client.MissingHeaderField", ClientError),
])
def test_xroad_technical_faults_carry_code_and_detail_id(site, code, cls):
    detail = str(uuid.uuid4())
    site.fault = _xroad_fault(code, detail)
    c = make_client(site.base + "/prepared.wsdl", "KG/GOV/70000001/registry", "KG/COM/555/portal")
    with pytest.raises(cls) as exc:
        c.service.echo("x")
    assert exc.value.code == code.split(":")[-1]
    assert exc.value.detail_id == detail
    assert exc.value.message == "It failed"
    assert isinstance(exc.value, XRoadFault)


@pytest.mark.parametrize("code,cls", [
    ("Client.NotFound", ServiceFault), ("Server.Oops", ServiceFault),
    ("Client.InvalidClientIdentifier", ClientError),
    ("Server.ServerProxy.ServiceFailed.InvalidResponse", ServerProxyError),
])
def test_classify(code, cls):
    assert classify(code) is cls
