"""zeep clients built from the WSDL the consumer's security server serves, calling the
civil registry through both security servers (real sockets, mutual TLS, signatures)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import urllib.request
from decimal import Decimal

import pytest
import requests
import zeep
from lxml import etree
from zeep.helpers import serialize_object
from zeep.plugins import Plugin

from tunduk.client import (ServerProxyError, ServiceFault, XRoadHeaderPlugin,
                           XRoadServiceClient, make_client, wsdl_url)
from tunduk.server.core.identifiers import XROAD_NS, ClientId, ServiceId
from tunduk.server.core.wsdl import SOAP_NS as WSDL_SOAP
from tunduk.server.core.wsdl import WSDL_NS, XSD_NS
from tunduk.server.services import civil_registry
from tunduk.server.services.hosting import local_wsdl

SPYNE = "tunduk.server.services.civil_registry:application"
SERVICES = [{"subsystem": "registry", "code": c, "version": "v1", "spyne": SPYNE}
            for c in ("getBirthRecord", "getResidenceRecord")]
# The centre may read birth records; the member itself (not its subsystems) residences.
ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]},
          {"service": "registry/getResidenceRecord", "clients": ["KG/GOV/70000002"]}]
LEGACY = [{"path": "/legacy/birth", "client": "KG/GOV/70000002/centre",
           "service": "KG/GOV/70000001/registry/getBirthRecord/v1"}]
BIRTH = ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord/v1")
RESIDENCE = ServiceId.parse("KG/GOV/70000001/registry/getResidenceRecord/v1")
PROVIDER = ClientId.parse("KG/GOV/70000001/registry")
CENTRE = ClientId.parse("KG/GOV/70000002/centre")
CONSUMER_MEMBER = ClientId("KG", "GOV", "70000002")


@pytest.fixture
def fed(run_federation):
    return run_federation(services=SERVICES, access=ACCESS, consumer_legacy=LEGACY)


def body_of(result):
    """zeep returns {header, body} when the output declares header parts."""
    data = serialize_object(result, dict)
    return data["body"] if isinstance(data, dict) and "body" in data else data


def expected_birth(code: str) -> dict:
    rec = dict(civil_registry._BIRTHS[code])
    rec["parents"] = [dict(personalCode=p, firstName=f, lastName=l, relation=r)
                      for p, f, l, r in rec["parents"]]
    return rec


def plain_zeep(fed, service: ServiceId, caller: ClientId) -> zeep.Client:
    url = wsdl_url(fed.client_url, service)
    plugin = XRoadHeaderPlugin(caller, service.provider, version=service.version)
    return zeep.Client(url, plugins=[plugin])


def test_served_wsdl_needs_no_internet(fed):
    wsdl = urllib.request.urlopen(wsdl_url(fed.client_url, BIRTH), timeout=30).read()
    assert b'schemaLocation="http://x-road.eu' not in wsdl
    assert (fed.client_url + "/xsd/xroad.xsd").encode() in wsdl


@pytest.mark.parametrize("code", sorted(civil_registry._BIRTHS))
def test_plain_zeep_client_round_trips_nested_records(fed, code):
    client = plain_zeep(fed, BIRTH, CENTRE)
    got = body_of(client.service.getBirthRecord(personalCode=code))["getBirthRecordResult"]
    want = expected_birth(code)
    assert got == want
    assert isinstance(got["birthDate"], dt.date)
    assert got["registeredAt"].utcoffset() == dt.timedelta(0)


def test_decimals_dates_and_optional_fields(fed):
    client = plain_zeep(fed, RESIDENCE, CONSUMER_MEMBER)
    for code, rec in civil_registry._RESIDENCES.items():
        got = body_of(client.service.getResidenceRecord(personalCode=code))[
            "getResidenceRecordResult"]
        assert got["fee"] == rec["fee"] and isinstance(got["fee"], Decimal)
        assert str(got["fee"]) == str(rec["fee"])        # "0.00" stays "0.00"
        assert got["since"] == rec["since"]
        assert got["address"] == rec["address"]          # None where optional is absent


def test_make_client_from_security_server_base_url(fed):
    client = make_client(fed.client_url, "KG/GOV/70000001/registry/getBirthRecord/v1",
                         "KG/GOV/70000002/centre")
    got = body_of(client.service.getBirthRecord(personalCode="12201199500044"))
    assert got["getBirthRecordResult"] == expected_birth("12201199500044")


def test_service_fault_arrives_as_service_fault(fed):
    client = make_client(fed.client_url, str(BIRTH), str(CENTRE))
    with pytest.raises(ServiceFault) as info:
        client.service.getBirthRecord(personalCode="00000000000000")
    assert info.value.code == "Client.NotFound"
    assert "00000000000000" in info.value.message


def test_operation_without_access_is_refused_and_not_allowed(fed):
    client = make_client(fed.client_url, str(RESIDENCE), str(CENTRE))
    with pytest.raises(ServerProxyError) as info:
        client.service.getResidenceRecord(personalCode="21505198800011")
    assert info.value.code == "Server.ServerProxy.AccessDenied"
    meta = metaservices_client(fed, CENTRE)
    allowed = [svc_text(s) for s in body_of(meta.service.allowedMethods())["service"]]
    assert allowed == [str(BIRTH)]
    listed = [svc_text(s) for s in body_of(meta.service.listMethods())["service"]]
    assert listed == [str(BIRTH), str(RESIDENCE)]
    member_allowed = body_of(metaservices_client(fed, CONSUMER_MEMBER)
                             .service.allowedMethods())["service"]
    assert [svc_text(s) for s in member_allowed] == [str(RESIDENCE)]


def metaservices_client(fed, caller: ClientId) -> XRoadServiceClient:
    """The bundled metaservices WSDL, served by the security server, bound to it."""
    zc = zeep.Client(fed.client_url + "/xsd/metaservices.wsdl",
                     plugins=[XRoadHeaderPlugin(caller, PROVIDER)])
    return XRoadServiceClient(zc, zc.plugins[0], fed.client_url + "/")


def svc_text(s) -> str:
    s = serialize_object(s, dict)
    return str(ServiceId(s["xRoadInstance"], s["memberClass"], s["memberCode"],
                         s.get("subsystemCode"), s["serviceCode"], s.get("serviceVersion")))


def test_wsdl_for_unknown_service_is_unknown_service_fault(fed):
    missing = ServiceId.parse("KG/GOV/70000001/registry/getDeathRecord/v1")
    with pytest.raises(requests.HTTPError) as info:
        zeep.Client(wsdl_url(fed.client_url, missing))
    assert info.value.response.status_code == 500
    assert b"<faultcode>Server.ServerProxy.UnknownService</faultcode>" in \
        info.value.response.content


def test_python_m_zeep_prints_the_operations(fed):
    out = subprocess.run([sys.executable, "-m", "zeep", wsdl_url(fed.client_url, BIRTH)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "getBirthRecord(personalCode:" in out.stdout
    assert "getResidenceRecord(personalCode:" in out.stdout
    assert "protocolVersion: xsd:string" in out.stdout     # X-Road header parts


def test_list_clients(fed):
    xml = urllib.request.urlopen(fed.client_url + "/listClients", timeout=30).read()
    for code in ("70000001", "70000002"):
        assert f"<id:memberCode>{code}</id:memberCode>".encode() in xml
    assert xml.count(b'objectType="MEMBER"') == 2
    assert xml.count(b'objectType="SUBSYSTEM"') == 2
    assert b"<id:subsystemCode>registry</id:subsystemCode>" in xml
    assert b"<id:subsystemCode>centre</id:subsystemCode>" in xml


def legacy_wsdl(address: str) -> bytes:
    """The registry's own WSDL with every trace of X-Road removed: a legacy client's."""
    wsdl = etree.fromstring(local_wsdl(SPYNE, address))
    for hdr in list(wsdl.iter(f"{{{WSDL_SOAP}}}header")):
        hdr.getparent().remove(hdr)
    for msg in wsdl.findall(f"{{{WSDL_NS}}}message"):
        if msg.get("name", "").startswith("xroadHeaders"):
            wsdl.remove(msg)
    for imp in list(wsdl.iter(f"{{{XSD_NS}}}import")):
        if imp.get("namespace") == XROAD_NS:
            imp.getparent().remove(imp)
    data = etree.tostring(wsdl)
    assert XROAD_NS.encode() not in data.replace(b'xmlns:xrd="%s"' % XROAD_NS.encode(), b"")
    return data


def test_legacy_alias_with_a_plain_zeep_client(fed):
    path = fed.files.dir / "legacy.wsdl"
    path.write_bytes(legacy_wsdl(fed.client_url + "/legacy/birth"))
    sent: list[bytes] = []

    class Spy(Plugin):
        def egress(self, envelope, http_headers, operation, binding_options):
            sent.append(etree.tostring(envelope))
            return envelope, http_headers

    client = zeep.Client(str(path), plugins=[Spy()])
    got = serialize_object(client.service.getBirthRecord(personalCode="21505198800011"),
                           dict)
    assert got == expected_birth("21505198800011")
    assert len(sent) == 1 and XROAD_NS.encode() not in sent[0]   # no X-Road headers sent
    with pytest.raises(zeep.exceptions.Fault) as info:
        client.service.getBirthRecord(personalCode="00000000000000")
    assert info.value.code.endswith("Client.NotFound")
