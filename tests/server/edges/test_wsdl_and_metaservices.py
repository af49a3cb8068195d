"""Metaservices, WSDL, schemas and legacy aliases across two real security servers.

The provider hosts the civil registry (spyne) in-process; every request crosses real
sockets, mutual TLS and signatures.
"""
from __future__ import annotations

import base64
import http.client
import socket
import uuid
from urllib.parse import urlsplit

import pytest
from lxml import etree

from tests.fixtures.wsgi_server import serve_wsgi
from tests.http_helpers import SOAP, Reply, post
from tests.xroad_requests import request
from tunduk.server.core.exchange import TUNDUK_NS
from tunduk.server.core.identifiers import ID_NS, XROAD_NS, service_from_xml
from tunduk.server.services.civil_registry import wsgi_app as registry_wsgi

SPYNE = "tunduk.server.services.civil_registry:application"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
SERVICES = [{"subsystem": "registry", "code": c, "version": "v1", "spyne": SPYNE}
            for c in ("getBirthRecord", "getResidenceRecord")]
ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]
LEGACY = [{"path": "/legacy/birth", "client": "KG/GOV/70000002/centre",
           "service": "KG/GOV/70000001/registry/getBirthRecord/v1"}]
WSDL_QUERY = ("/wsdl?xRoadInstance=KG&memberClass=GOV&memberCode=70000001"
              "&subsystemCode=registry&serviceCode={code}&version=v1")

PLAIN_BIRTH_REQUEST = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:reg="http://registry.demo.tunduk.kg/">
  <soapenv:Body><reg:getBirthRecord><reg:personalCode>%s</reg:personalCode>
  </reg:getBirthRecord></soapenv:Body>
</soapenv:Envelope>"""


@pytest.fixture
def fed(run_federation):
    return run_federation(services=SERVICES, access=ACCESS, consumer_legacy=LEGACY)


def get(url: str, headers: dict | None = None) -> Reply:
    """GET with the query string (tests.http_helpers.post sends the path only)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""),
                     headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def meta_request(code: str, body: str = "") -> bytes:
    return request(code, payload=body).replace(
        b"<reg:%s>" % code.encode(), b"<xrd:%s>" % code.encode()).replace(
        b"</reg:%s>" % code.encode(), b"</xrd:%s>" % code.encode()).replace(
        b"<id:serviceVersion>v1</id:serviceVersion>", b"")


def services_in(reply) -> list[str]:
    wrapper = reply.xml().find(f"{{{SOAP}}}Body")[0]
    return [str(service_from_xml(el)) for el in wrapper]


# -- listClients --------------------------------------------------------------------
def test_list_clients_lists_members_and_subsystems(fed):
    reply = get(fed.client_url + "/listClients")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/xml")
    root = reply.xml()
    assert root.tag == f"{{{XROAD_NS}}}clientList"
    ids = {}
    for member in root:
        cid = member.find(f"{{{XROAD_NS}}}id")
        key = "/".join(cid.findtext(f"{{{ID_NS}}}{n}") or "" for n in (
            "xRoadInstance", "memberClass", "memberCode", "subsystemCode")).rstrip("/")
        ids[key] = (cid.get(f"{{{ID_NS}}}objectType"), member.findtext(f"{{{XROAD_NS}}}name"))
    assert ids == {
        "KG/GOV/70000001": ("MEMBER", "Civil Registry"),
        "KG/GOV/70000001/registry": ("SUBSYSTEM", "Civil Registry"),
        "KG/GOV/70000002": ("MEMBER", "Public Service Centre"),
        "KG/GOV/70000002/centre": ("SUBSYSTEM", "Public Service Centre"),
    }


# -- /wsdl and /xsd -----------------------------------------------------------------
def test_wsdl_comes_through_the_exchange_rewritten_for_offline_clients(fed):
    reply = get(fed.client_url + WSDL_QUERY.format(code="getBirthRecord"))
    assert reply.status == 200, reply.body
    root = reply.xml()
    assert root.tag == f"{{{WSDL_NS}}}definitions"
    locations = [el.get("schemaLocation") for el in root.iter(f"{{{XSD}}}import",
                                                               f"{{{XSD}}}include")
                 if el.get("schemaLocation")]
    assert locations and all(loc.startswith(fed.client_url + "/xsd/") for loc in locations)
    assert b'schemaLocation="http://x-road.eu' not in reply.body     # no internet needed
    addresses = [el.get("location") for el in root.iter(
        "{http://schemas.xmlsoap.org/wsdl/soap/}address")]
    assert addresses == [fed.client_url + "/"]
    assert {el.text for el in root.iter(f"{{{XROAD_NS}}}version")} == {"v1"}
    # the header parts are declared for generated clients
    assert b'part="client"' in reply.body and b'part="protocolVersion"' in reply.body
    for loc in locations:
        schema = get(loc)
        assert schema.status == 200
        assert schema.xml().tag == f"{{{XSD}}}schema"


def test_wsdl_honours_the_host_header(fed):
    reply = get(fed.client_url + WSDL_QUERY.format(code="getBirthRecord"),
                headers={"Host": "ss.centre.example:8080"})
    assert reply.status == 200
    assert b'location="http://ss.centre.example:8080/"' in reply.body
    assert b"http://ss.centre.example:8080/xsd/xroad.xsd" in reply.body


def test_wsdl_of_unknown_service_is_a_fault_from_the_provider(fed):
    reply = get(fed.client_url + WSDL_QUERY.format(code="getDeathRecord"))
    assert reply.status == 500
    assert reply.fault_code == "Server.ServerProxy.UnknownService"
    assert "getDeathRecord" in reply.fault_string
    assert b"Traceback" not in reply.body


def test_wsdl_of_unknown_member(fed):
    reply = get(fed.client_url + WSDL_QUERY.format(code="getBirthRecord").replace(
        "70000001", "99999999"))
    assert reply.status == 500
    assert reply.fault_code == "Server.ClientProxy.UnknownMember"


def test_wsdl_with_missing_parameters(fed):
    reply = get(fed.client_url + "/wsdl?xRoadInstance=KG&memberClass=GOV")
    assert reply.status == 500
    assert reply.fault_code == "Client.InvalidServiceIdentifier"
    assert "memberCode" in reply.fault_string and "serviceCode" in reply.fault_string


def test_wsdl_when_provider_is_down(fed):
    fed.provider.stop()
    reply = get(fed.client_url + WSDL_QUERY.format(code="getBirthRecord"))
    assert reply.status == 500
    assert reply.fault_code == "Server.ClientProxy.NetworkError"


def test_unknown_schema_and_path(fed):
    assert get(fed.client_url + "/xsd/passwd").status == 404
    assert get(fed.client_url + "/xsd/../conf").status == 404
    reply = get(fed.client_url + "/nothing-here")
    assert reply.status == 404 and reply.fault_code.startswith("Client.")


def test_wsdl_of_external_backend_is_fetched_by_get(run_federation):
    with serve_wsgi(registry_wsgi) as backend:
        services = [{"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
                     "url": backend + "/"},
                    {"subsystem": "registry", "code": "echo", "version": "v1",
                     "url": backend + "/", "wsdl_url": backend + "/?wsdl"},
                    {"subsystem": "registry", "code": "broken", "version": "v1",
                     "url": "http://127.0.0.1:9/"}]
        granted = [{"service": f"registry/{c}", "clients": ["KG/GOV/70000002/centre"]}
                   for c in ("getBirthRecord", "echo", "broken")]
        fed = run_federation(services=services, access=granted)
        for code in ("getBirthRecord", "echo"):
            reply = get(fed.client_url + WSDL_QUERY.format(code=code))
            assert reply.status == 200, reply.body
            assert b'name="getBirthRecord"' in reply.body
            assert backend.encode() not in reply.body      # the backend stays hidden
        reply = get(fed.client_url + WSDL_QUERY.format(code="broken"))
        assert reply.fault_code == "Server.ServerProxy.WsdlFailed"


# -- metaservices as SOAP through the client proxy ----------------------------------
def test_list_methods_lists_every_service_of_the_provider(fed):
    reply = post(fed.client_url, meta_request("listMethods"))
    assert reply.status == 200, reply.body
    assert services_in(reply) == ["KG/GOV/70000001/registry/getBirthRecord/v1",
                                  "KG/GOV/70000001/registry/getResidenceRecord/v1"]
    header = reply.xml().find(f"{{{SOAP}}}Header")
    assert header.find(f"{{{XROAD_NS}}}requestHash") is not None


def test_allowed_methods_lists_only_what_the_caller_may_use(fed):
    reply = post(fed.client_url, meta_request("allowedMethods"))
    assert reply.status == 200, reply.body
    assert services_in(reply) == ["KG/GOV/70000001/registry/getBirthRecord/v1"]
    denied = post(fed.client_url, request("getResidenceRecord"))
    assert denied.fault_code == "Server.ServerProxy.AccessDenied"


def test_get_wsdl_metaservice_carries_the_wsdl_in_the_signed_body(fed):
    raw = meta_request("getWsdl", "<xrd:serviceCode>getBirthRecord</xrd:serviceCode>"
                                  "<xrd:serviceVersion>v1</xrd:serviceVersion>")
    reply = post(fed.client_url, raw)
    assert reply.status == 200, reply.body
    wrapper = reply.xml().find(f"{{{SOAP}}}Body")[0]
    assert wrapper.tag == f"{{{XROAD_NS}}}getWsdlResponse"
    assert wrapper.findtext(f"{{{XROAD_NS}}}serviceCode") == "getBirthRecord"
    assert wrapper.findtext(f"{{{XROAD_NS}}}serviceVersion") == "v1"
    wsdl = base64.b64decode(wrapper.findtext(f"{{{TUNDUK_NS}}}wsdl"))
    assert etree.fromstring(wsdl).tag == f"{{{WSDL_NS}}}definitions"


def test_get_wsdl_metaservice_errors(fed):
    missing = post(fed.client_url, meta_request("getWsdl", "<xrd:other>x</xrd:other>"))
    assert missing.fault_code == "Server.ServerProxy.InvalidBody"
    wrong_version = post(fed.client_url, meta_request(
        "getWsdl", "<xrd:serviceCode>getBirthRecord</xrd:serviceCode>"
                   "<xrd:serviceVersion>v9</xrd:serviceVersion>"))
    assert wrong_version.fault_code == "Server.ServerProxy.UnknownService"


def test_wsdl_is_shown_only_to_members_with_access_to_the_service(fed):
    """getWsdl (and so /wsdl) answers a client whose member, itself or through a
    subsystem, may use the service; the consumer's owner asks for its subsystems."""
    assert get(fed.client_url + WSDL_QUERY.format(code="getBirthRecord")).status == 200
    reply = get(fed.client_url + WSDL_QUERY.format(code="getResidenceRecord"))
    assert reply.fault_code == "Server.ServerProxy.AccessDenied", reply.body
    assert "may not see the WSDL" in reply.fault_string
    raw = meta_request("getWsdl", "<xrd:serviceCode>getResidenceRecord</xrd:serviceCode>")
    assert post(fed.client_url, raw).fault_code == "Server.ServerProxy.AccessDenied"


def test_metaservice_of_a_subsystem_unknown_to_the_provider(fed):
    # The consumer's own server proxy is asked (its member); the subsystem is unknown
    # there, so the metaservice is not the server's to answer.
    raw = meta_request("listMethods").replace(
        b"<id:memberCode>70000001</id:memberCode>\n      <id:subsystemCode>registry",
        b"<id:memberCode>70000002</id:memberCode>\n      <id:subsystemCode>centre")
    reply = post(fed.client_url, raw)
    assert reply.status == 200, reply.body
    assert services_in(reply) == []      # the centre provides nothing


# -- legacy aliases and request targets ---------------------------------------------
def test_legacy_alias_adds_and_removes_xroad_headers(fed):
    reply = post(fed.client_url + "/legacy/birth", PLAIN_BIRTH_REQUEST % b"21505198800011")
    assert reply.status == 200, reply.body
    assert XROAD_NS.encode() not in reply.body
    assert b"wsse" not in reply.body
    result = reply.xml().find(f"{{{SOAP}}}Body")[0]
    assert etree.QName(result).localname == "getBirthRecordResponse"
    assert b"<tns:firstName>Aibek</tns:firstName>" in reply.body or b"Aibek" in reply.body


def test_legacy_alias_service_fault_passes_without_headers(fed):
    reply = post(fed.client_url + "/legacy/birth", PLAIN_BIRTH_REQUEST % b"00000000000000")
    assert reply.fault_code.endswith("Client.NotFound")
    assert XROAD_NS.encode() not in reply.body


def test_legacy_alias_refuses_requests_with_xroad_headers(fed):
    reply = post(fed.client_url + "/legacy/birth", request())
    assert reply.status == 500
    assert reply.fault_code == "Client.InvalidMessage"
    assert "legacy alias" in reply.fault_string


def test_legacy_alias_wrong_operation_is_invalid_body(fed):
    raw = (PLAIN_BIRTH_REQUEST % b"1").replace(b"getBirthRecord>", b"getResidenceRecord>")
    assert post(fed.client_url + "/legacy/birth", raw).fault_code == "Client.InvalidBody"


def raw_http(url_base: str, target: str, body: bytes) -> bytes:
    host, port = url_base.rsplit("/", 1)[-1].split(":")
    head = (f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head + body)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/", "/cgi-bin/consumer_proxy", "/any/path?x=1"])
def test_any_path_and_absolute_form_targets(fed, path):
    message_id = str(uuid.uuid4())
    for target in (path, fed.client_url + path):
        out = raw_http(fed.client_url, target, request(
            message_id=message_id,
            payload="<reg:personalCode>21505198800011</reg:personalCode>"))
        status_line, _, rest = out.partition(b"\r\n")
        assert b" 200 " in status_line, out[:600]
        assert message_id.encode() in rest


def test_legacy_alias_in_absolute_form(fed):
    out = raw_http(fed.client_url, fed.client_url + "/legacy/birth",
                   PLAIN_BIRTH_REQUEST % b"12201199500044")
    assert b" 200 " in out.partition(b"\r\n")[0], out[:600]
    assert b"Toktogulova" in out and XROAD_NS.encode() not in out


def test_a_multipart_request_to_a_hosted_service_is_refused_clearly(fed):
    """It ended in Server.ServerProxy.InternalError: hosted (spyne) services take
    plain SOAP, and the fault says so."""
    from tests.server.edges.test_attachments import SWA_TYPE, swa_request
    reply = post(fed.client_url, swa_request(request()), content_type=SWA_TYPE)
    assert reply.fault_code == "Server.ServerProxy.InvalidContentType", reply.body
    assert "takes plain SOAP only" in reply.fault_string
