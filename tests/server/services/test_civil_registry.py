"""The demo civil registry over a real socket, called by zeep from its prepared WSDL."""
from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from tunduk.server.core.identifiers import ID_NS, XROAD_NS
from tunduk.server.services.civil_registry import TNS

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class LocalOnlyTransport(Transport):
    """Refuse anything but 127.0.0.1: proves the WSDL needs no internet."""

    def load(self, url):
        assert url.startswith("http://127.0.0.1:"), f"tried to fetch {url}"
        return super().load(url)


def _headers(client):
    return {
        "client": {"objectType": "SUBSYSTEM", "xRoadInstance": "KG", "memberClass": "GOV",
                   "memberCode": "70000002", "subsystemCode": "portal"},
        "service": {"objectType": "SERVICE", "xRoadInstance": "KG", "memberClass": "GOV",
                    "memberCode": "70000001", "subsystemCode": "registry",
                    "serviceCode": "getBirthRecord", "serviceVersion": "v1"},
        "id": "a1b2c3", "userId": "KG12345678", "protocolVersion": "4.0",
    }


@pytest.fixture(scope="module")
def zclient(registry):
    base, _, _ = registry
    return zeep.Client(base + "/prepared.wsdl", transport=LocalOnlyTransport())


def test_birth_record_round_trips_nested_lists_dates_and_optionals(zclient):
    res = zclient.service.getBirthRecord(personalCode="21505198800011",
                                         _soapheaders=_headers(zclient))
    rec = res.body.getBirthRecordResult
    assert (rec.firstName, rec.middleName, rec.lastName) == ("Aibek", "Nurlanovich", "Sadyrov")
    assert rec.birthDate == dt.date(1988, 5, 15)
    assert rec.registeredAt == dt.datetime(1988, 5, 20, 10, 30, tzinfo=dt.timezone.utc)
    assert [(p.personalCode, p.firstName, p.relation) for p in rec.parents] == [
        ("11203196500022", "Nurlan", "father"), ("21708196700033", "Gulnara", "mother")]


def test_absent_optional_field_and_empty_list(zclient):
    rec = zclient.service.getBirthRecord("10101200000066").body.getBirthRecordResult
    assert rec.middleName is None
    assert rec.parents == []
    assert rec.placeOfBirth == "Karakol"


def test_residence_record_decimal_and_nested_address_exact(zclient):
    rec = zclient.service.getResidenceRecord("21505198800011").body.getResidenceRecordResult
    assert rec.fee == Decimal("150.50") and str(rec.fee) == "150.50"
    assert rec.since == dt.date(2015, 9, 1)
    assert (rec.address.city, rec.address.apartment, rec.address.postalCode) == (
        "Bishkek", "45", "720040")
    other = zclient.service.getResidenceRecord("12201199500044").body.getResidenceRecordResult
    assert other.address.apartment is None and other.fee == Decimal("0.00")


def test_echo_returns_text_unchanged(zclient):
    text = "Салам, дүйнө! <&> 1"
    assert zclient.service.echo(text).body.echoResult == text


def test_unknown_personal_code_is_a_client_not_found_fault(zclient):
    with pytest.raises(Fault) as exc:
        zclient.service.getBirthRecord("99999999999999")
    assert exc.value.code.split(":")[-1] == "Client.NotFound"
    assert exc.value.message == "No birth record for personal code 99999999999999"


REQUEST = f"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}" xmlns:reg="{TNS}">
  <SOAP-ENV:Header>
    <ns0:client xmlns:ns0="{XROAD_NS}" xmlns:ns1="{ID_NS}" ns1:objectType="MEMBER">
      <ns1:xRoadInstance>KG</ns1:xRoadInstance><ns1:memberClass>COM</ns1:memberClass>
      <ns1:memberCode>555</ns1:memberCode>
    </ns0:client>
    <ns4:service xmlns:ns4="{XROAD_NS}" xmlns:i="{ID_NS}" i:objectType="SERVICE">
      <i:xRoadInstance>KG</i:xRoadInstance><i:memberClass>GOV</i:memberClass>
      <i:memberCode>70000001</i:memberCode><i:subsystemCode>registry</i:subsystemCode>
      <i:serviceCode>{{op}}</i:serviceCode>
    </ns4:service>
    <ns4:id xmlns:ns4="{XROAD_NS}">0f1e2d3c4b5a69788796a5b4c3d2e1f0</ns4:id>
    <x:issue xmlns:x="{XROAD_NS}">case-17</x:issue>
    <x:userId xmlns:x="{XROAD_NS}">12345</x:userId>
    <x:protocolVersion xmlns:x="{XROAD_NS}">4.0</x:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body><reg:{{op}}><reg:personalCode>{{code}}</reg:personalCode></reg:{{op}}></SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


def _post(base, body):
    req = urllib.request.Request(base + "/", data=body, method="POST",
                                 headers={"Content-Type": "text/xml; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _xroad_headers(doc):
    header = doc.find(f"{{{ENV}}}Header")
    return [(etree.QName(el).text, el.text.strip() if el.text else "",
             sorted(el.attrib.items()),
             [(etree.QName(c).text, c.text) for c in el])
            for el in header if etree.QName(el).namespace == XROAD_NS]


@pytest.mark.parametrize("op,code,status", [
    ("getBirthRecord", "21505198800011", 200),
    ("getBirthRecord", "00000000000000", 500),  # faults echo the headers too
])
def test_response_echoes_request_headers_in_order(registry, op, code, status):
    base, _, _ = registry
    body = REQUEST.replace("{op}", op).replace("{code}", code).encode()
    got_status, out = _post(base, body)
    assert got_status == status
    sent = etree.fromstring(body)
    got = etree.fromstring(out)
    assert _xroad_headers(got) == _xroad_headers(sent)
    assert [etree.QName(el).localname for el in got.find(f"{{{ENV}}}Header")] == [
        "client", "service", "id", "issue", "userId", "protocolVersion"]
    wrapper = got.find(f"{{{ENV}}}Body")[0]
    if status == 200:
        assert wrapper.tag == f"{{{TNS}}}{op}Response"
    else:
        assert wrapper.tag == f"{{{ENV}}}Fault"


def test_served_wsdl_declares_xroad_headers_and_wrapper_names(registry):
    _, raw, _ = registry
    root = etree.fromstring(raw)
    elements = {el.get("name") for el in root.iter("{http://www.w3.org/2001/XMLSchema}element")
                if el.getparent().tag.endswith("schema")}
    ops = [op.get("name") for op in root.find(f"{{{WSDL_NS}}}binding")
           .findall(f"{{{WSDL_NS}}}operation")]
    assert sorted(ops) == ["echo", "getBirthRecord", "getResidenceRecord"]
    for op_el in root.find(f"{{{WSDL_NS}}}binding").findall(f"{{{WSDL_NS}}}operation"):
        name = op_el.get("name")
        assert name in elements and f"{name}Response" in elements
        for io in ("input", "output"):
            parts = [h.get("part") for h in op_el.find(f"{{{WSDL_NS}}}{io}")
                     .findall(f"{{{SOAP_NS}}}header")]
            assert parts == ["client", "service", "id", "userId", "issue", "protocolVersion"]


def test_prepared_wsdl_points_at_local_schemas_and_has_version(registry):
    base, _, prepared = registry
    root = etree.fromstring(prepared)
    locs = [el.get("schemaLocation")
            for el in root.iter("{http://www.w3.org/2001/XMLSchema}import")
            if el.get("schemaLocation")]
    assert locs == [base + "/xsd/xroad.xsd"]
    versions = [v.text for v in root.iter(f"{{{XROAD_NS}}}version")]
    assert versions == ["v1", "v1", "v1"]
