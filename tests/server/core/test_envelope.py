"""In-memory checks of the envelope parser's tolerance (the corpus tests drive it end to end)."""
from __future__ import annotations

import pytest

from tunduk.server.core import errors
from tunduk.server.core.envelope import parse_envelope
from tunduk.server.core.errors import XRoadError

REQUEST = """<?xml version="1.0" encoding="UTF-8"?>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">
 <e:Header>
  <xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>KG</id:xRoadInstance>
   <id:memberClass>GOV</id:memberClass><id:memberCode>{code}</id:memberCode>
   <id:subsystemCode>centre</id:subsystemCode></xrd:client>
  <xrd:service id:objectType="SERVICE"><id:xRoadInstance>KG</id:xRoadInstance>
   <id:memberClass>GOV</id:memberClass><id:memberCode>70000001</id:memberCode>
   <id:serviceCode>echo</id:serviceCode></xrd:service>
  <xrd:id>{id}</xrd:id><xrd:issue>{issue}</xrd:issue>
  <xrd:protocolVersion>4.0</xrd:protocolVersion>
 </e:Header>
 <e:Body><echo/></e:Body>
</e:Envelope>"""


def make(code="70000002", id="m1", issue="x") -> str:
    return REQUEST.format(code=code, id=id, issue=issue)


def test_comments_and_pis_inside_values_are_skipped():
    env = parse_envelope(make(code="7000<!-- c -->0002", id="m<?pi x?>1").encode(),
                         "text/xml")
    assert str(env.xroad.client) == "KG/GOV/70000002/centre"
    assert env.xroad.id == "m1"


def test_element_inside_a_value_is_refused():
    with pytest.raises(XRoadError) as exc:
        parse_envelope(make(code="7000<b>0</b>002").encode(), "text/xml")
    assert exc.value.code == errors.INVALID_CLIENT_IDENTIFIER
    with pytest.raises(XRoadError) as exc:
        parse_envelope(make(id="m<b/>1").encode(), "text/xml")
    assert exc.value.code == errors.INVALID_MESSAGE


def test_content_type_charset_is_authoritative():
    text = make(issue="Заявка").replace('encoding="UTF-8"', 'encoding="windows-1251"')
    assert parse_envelope(text.encode("cp1251"), "text/xml; charset=windows-1251") \
        .xroad.issue == "Заявка"
    # No charset parameter: the XML declaration decides.
    assert parse_envelope(text.encode("cp1251"), "text/xml").xroad.issue == "Заявка"
    # charset=utf-8 stated: other bytes are refused, whatever the declaration says.
    with pytest.raises(XRoadError) as exc:
        parse_envelope(make(issue="Заявка").encode("utf-16-le"), "text/xml; charset=utf-8")
    assert exc.value.code == errors.INVALID_XML


def test_utf8_bom_is_accepted():
    env = parse_envelope(b"\xef\xbb\xbf" + make(issue="Өтүнмө").encode(),
                         "text/xml; charset=utf-8")
    assert env.xroad.issue == "Өтүнмө"
