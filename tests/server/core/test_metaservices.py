"""Metaservices: listClients XML, list/allowedMethods responses, access filtering."""
from __future__ import annotations

from pathlib import Path

import pytest
import zeep
from lxml import etree

from tests.fixtures.wsgi_server import serve_wsgi
from tunduk.schemas import schema_path
from tunduk.server.conf.model import (AccessRule, Federation, Keys, Listen, LocalService,
                                      Member, ServerConf)
from tunduk.server.core.identifiers import (ID_NS, XROAD_NS, ClientId, MemberId, ServiceId,
                                            client_from_xml, service_from_xml)
from tunduk.server.core.metaservices import (allowed_methods_response, allowed_services,
                                             list_clients_xml, list_methods_response,
                                             provided_services)
from tunduk.server.services.echo_headers import request_xroad_headers

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
GOV = MemberId("KG", "GOV", "70000001")
COM = MemberId("KG", "COM", "555")
PORTAL = ClientId("KG", "COM", "555", "portal")
REGISTRY = ClientId("KG", "GOV", "70000001", "registry")


def _federation() -> Federation:
    return Federation(
        instance="KG",
        members={GOV: Member(GOV, "State Registration Service", ("registry", "archive")),
                 COM: Member(COM, "Demo Bank", ("portal",)),
                 MemberId("EE", "GOV", "1"): Member(MemberId("EE", "GOV", "1"), "Foreign")},
        servers=(), ca_certs_pem=b"")


def _svc(code, version=None, provider=REGISTRY):
    return ServiceId(provider.instance, provider.member_class, provider.member_code,
                     provider.subsystem, code, version)


def _conf(access) -> ServerConf:
    services = {}
    for code, ver in [("getBirthRecord", "v1"), ("getResidenceRecord", None), ("echo", None),
                      ("listMethods", None)]:
        services[_svc(code)] = LocalService(id=_svc(code, ver), spyne="x:y")
    other = ClientId("KG", "GOV", "70000001", "archive")
    services[_svc("getFile", provider=other)] = LocalService(id=_svc("getFile", provider=other))
    return ServerConf(owner=GOV, server_code="ss1", clients=(REGISTRY, other), listen=Listen(),
                      keys=Keys(Path("a"), Path("b"), Path("c"), Path("d")),
                      federation=_federation(), services=services, access=tuple(access),
                      data_dir=Path("/nonexistent"))


CLIENT_LIST_XSD = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  xmlns="{XROAD_NS}" targetNamespace="{XROAD_NS}" xmlns:id="{ID_NS}" elementFormDefault="qualified">
  <xs:import namespace="{ID_NS}" schemaLocation="{schema_path('identifiers.xsd').as_uri()}"/>
  <xs:complexType name="ClientListType"><xs:sequence>
    <xs:element name="member" type="ClientType" minOccurs="0" maxOccurs="unbounded"/>
  </xs:sequence></xs:complexType>
  <xs:complexType name="ClientType"><xs:sequence>
    <xs:element name="id" type="id:XRoadClientIdentifierType"/>
    <xs:element name="name" type="xs:string" minOccurs="0"/>
    <xs:element name="subsystemName" type="xs:string" minOccurs="0"/>
  </xs:sequence></xs:complexType>
  <xs:element name="clientList" type="ClientListType"/>
</xs:schema>"""


def test_list_clients_is_valid_and_lists_members_then_their_subsystems():
    doc = etree.fromstring(list_clients_xml(_federation()))
    etree.XMLSchema(etree.fromstring(CLIENT_LIST_XSD.encode())).assertValid(doc)
    members = doc.findall(f"{{{XROAD_NS}}}member")
    got = [(str(client_from_xml(m.find(f"{{{XROAD_NS}}}id"))),
            m.find(f"{{{XROAD_NS}}}id").get(f"{{{ID_NS}}}objectType"),
            m.findtext(f"{{{XROAD_NS}}}name")) for m in members]
    assert got == [
        ("KG/COM/555", "MEMBER", "Demo Bank"),
        ("KG/COM/555/portal", "SUBSYSTEM", "Demo Bank"),
        ("KG/GOV/70000001", "MEMBER", "State Registration Service"),
        ("KG/GOV/70000001/archive", "SUBSYSTEM", "State Registration Service"),
        ("KG/GOV/70000001/registry", "SUBSYSTEM", "State Registration Service"),
    ]


def test_list_clients_of_another_instance():
    doc = etree.fromstring(list_clients_xml(_federation(), instance="EE"))
    assert len(doc) == 1 and doc.findtext(f".//{{{ID_NS}}}xRoadInstance") == "EE"


def test_allowed_services_ignore_rule_version_and_exclude_metaservices():
    conf = _conf([AccessRule(_svc("getBirthRecord", "v9"), frozenset({PORTAL})),
                  AccessRule(_svc("listMethods"), frozenset({PORTAL})),
                  AccessRule(_svc("echo"), frozenset({ClientId("KG", "COM", "555")}))])
    assert allowed_services(conf, PORTAL) == [_svc("getBirthRecord", "v1")]
    # A MEMBER id in a rule admits the member itself, not its subsystems.
    assert allowed_services(conf, ClientId("KG", "COM", "555")) == [_svc("echo")]
    assert allowed_services(conf, ClientId("KG", "COM", "999")) == []


def test_allowed_services_for_one_provider():
    archive = ClientId("KG", "GOV", "70000001", "archive")
    conf = _conf([AccessRule(_svc("getFile", provider=archive), frozenset({PORTAL})),
                  AccessRule(_svc("echo"), frozenset({PORTAL}))])
    assert allowed_services(conf, PORTAL, provider=REGISTRY) == [_svc("echo")]
    assert allowed_services(conf, PORTAL, provider=archive) == [_svc("getFile", provider=archive)]


def test_provided_services_lists_one_provider_without_metaservices():
    assert [s.service_code for s in provided_services(_conf([]), REGISTRY)] == [
        "echo", "getBirthRecord", "getResidenceRecord"]


REQUEST = f"""<s:Envelope xmlns:s="{ENV}" xmlns:xroad="{XROAD_NS}" xmlns:id="{ID_NS}"><s:Header>
<xroad:client id:objectType="SUBSYSTEM"><id:xRoadInstance>KG</id:xRoadInstance>
<id:memberClass>COM</id:memberClass><id:memberCode>555</id:memberCode>
<id:subsystemCode>portal</id:subsystemCode></xroad:client>
<xroad:service id:objectType="SERVICE"><id:xRoadInstance>KG</id:xRoadInstance>
<id:memberClass>GOV</id:memberClass><id:memberCode>70000001</id:memberCode>
<id:subsystemCode>registry</id:subsystemCode><id:serviceCode>listMethods</id:serviceCode>
</xroad:service><xroad:id>411d6755</xroad:id><xroad:protocolVersion>4.0</xroad:protocolVersion>
</s:Header><s:Body><xroad:listMethods/></s:Body></s:Envelope>""".encode()


@pytest.mark.parametrize("fn,wrapper", [(list_methods_response, "listMethodsResponse"),
                                        (allowed_methods_response, "allowedMethodsResponse")])
def test_method_list_response_echoes_headers_and_lists_services(fn, wrapper):
    headers = request_xroad_headers(REQUEST)
    services = [_svc("getBirthRecord", "v1"), _svc("echo")]
    doc = etree.fromstring(fn(headers, services))
    got_headers = doc.find(f"{{{ENV}}}Header")
    assert [etree.tostring(e, method="c14n", exclusive=True) for e in got_headers] == [
        etree.tostring(e, method="c14n", exclusive=True) for e in headers]
    assert got_headers[0].prefix == "xroad"  # the caller's prefixes survive
    body = doc.find(f"{{{ENV}}}Body")[0]
    assert body.tag == f"{{{XROAD_NS}}}{wrapper}"
    assert [service_from_xml(s) for s in body] == services
    assert all(s.tag == f"{{{XROAD_NS}}}service" for s in body)
    # The caller's elements are copied, not moved.
    assert len(request_xroad_headers(REQUEST)) == len(headers) == 4


def test_metaservices_wsdl_loads_offline_and_parses_our_responses():
    services = [_svc("getBirthRecord", "v1"), _svc("echo")]

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        out = list_methods_response(request_xroad_headers(body), services)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [out]

    with serve_wsgi(app) as base:
        client = zeep.Client(str(schema_path("metaservices.wsdl")))
        assert set(client.service._binding._operations) == {
            "listMethods", "allowedMethods", "getWsdl"}
        svc = client.create_service("{%s}metaServicesPortSoap11" % XROAD_NS, base + "/")
        headers = {"client": {"objectType": "SUBSYSTEM", "xRoadInstance": "KG",
                              "memberClass": "COM", "memberCode": "555",
                              "subsystemCode": "portal"},
                   "id": "x1", "protocolVersion": "4.0"}
        res = svc.listMethods(_soapheaders=headers)
    assert [s.serviceCode for s in res.body.service] == ["getBirthRecord", "echo"]
    assert res.body.service[0].serviceVersion == "v1"
    assert res.header.id == "x1"
