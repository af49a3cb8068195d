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


def test_charset_named_by_the_content_type_or_the_declaration():
    text = make(issue="Заявка").replace('encoding="UTF-8"', 'encoding="windows-1251"')
    assert parse_envelope(text.encode("cp1251"), "text/xml; charset=windows-1251") \
        .xroad.issue == "Заявка"
    # No charset parameter: the XML declaration decides.
    assert parse_envelope(text.encode("cp1251"), "text/xml").xroad.issue == "Заявка"
    # No declaration: the Content-Type decides.
    bare = make(issue="Заявка").split("?>", 1)[1]
    assert parse_envelope(bare.encode("cp1251"), "text/xml; charset=cp1251") \
        .xroad.issue == "Заявка"
    # charset=utf-8 stated: other bytes are refused.
    with pytest.raises(XRoadError) as exc:
        parse_envelope(bare.encode("cp1251"), "text/xml; charset=utf-8")
    assert exc.value.code == errors.INVALID_XML


@pytest.mark.parametrize("data,ctype,words", [
    # the header and the declaration name two charsets: two messages in one
    (make().replace('encoding="UTF-8"', 'encoding="windows-1251"').encode(),
     "text/xml; charset=utf-8", "the XML declaration says windows-1251"),
    (b"\xef\xbb\xbf" + make().encode(), "text/xml; charset=iso-8859-1",
     "the byte order mark says utf-8"),
    (("\ufeff" + make().replace('encoding="UTF-8"', 'encoding="UTF-16"')).encode("utf-16-le"),
     "text/xml; charset=utf-8", "the byte order mark says utf-16"),
    (make().replace('encoding="UTF-8"', 'encoding="UTF-7"').encode(), "text/xml",
     "charset 'UTF-7'"),
    (make().encode(), "text/xml; charset=utf-7", "charset 'utf-7'"),
    (make().encode(), "text/xml; charset=ebcdic-cp-us", "charset 'ebcdic-cp-us'"),
    (make().encode(), "text/xml; charset=no-such-charset", "charset 'no-such-charset'"),
    (make().encode("utf-16-le"), "text/xml", "without a byte order mark"),
    (b"\x00\x00\xfe\xff" + make().encode("utf-32-be"), "text/xml", "UTF-32"),
    (make().encode(), "text/xml; charset=utf-8; charset=utf-8", "more than once"),
])
def test_ambiguous_charset_is_refused(data, ctype, words):
    with pytest.raises(XRoadError) as exc:
        parse_envelope(data, ctype)
    assert exc.value.code == errors.INVALID_CONTENT_TYPE
    assert words in exc.value.message


def test_utf16_with_a_byte_order_mark_and_agreeing_declaration():
    text = "\ufeff" + make(issue="Заявка").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    for ctype in ("text/xml", "text/xml; charset=UTF-16"):
        assert parse_envelope(text.encode("utf-16-be"), ctype).xroad.issue == "Заявка"


@pytest.mark.parametrize("decl", [
    b'<?xml version="1.0" standalone="yes" encoding="utf-7"?>',
    b'<?xml encoding="utf-8" version="1.0"?>',
    b"<?xml version='1.0' encoding=\"UTF-8'?>",
])
def test_malformed_xml_declaration_is_refused(decl):
    with pytest.raises(XRoadError) as exc:
        parse_envelope(decl + make().split("?>", 1)[1].encode(), "text/xml")
    assert exc.value.code == errors.INVALID_XML
    assert "XML declaration is malformed" in exc.value.message


def test_utf8_bom_is_accepted():
    env = parse_envelope(b"\xef\xbb\xbf" + make(issue="Өтүнмө").encode(),
                         "text/xml; charset=utf-8")
    assert env.xroad.issue == "Өтүнмө"


# -- what one message may hold: bounded CPU whatever it says ---------------------------

def _message(inner: str) -> bytes:
    text = make()
    assert "<echo/>" in text
    return text.replace("<echo/>", f"<echo>{inner}</echo>", 1).encode()


@pytest.mark.parametrize("inner,words", [
    ("<x " + " ".join(f'a{i}="1"' for i in range(45_000)) + "/>",
     "more attributes than 256 (limit max_attributes)"),
    ("<x " + " ".join(f'xmlns:n{i}="urn:{i}"' for i in range(65)) + "/>",
     "declaring more namespaces than 64 (limit max_namespaces)"),
    ("".join(f"<x{j} " + " ".join(f'xmlns:n{j}_{i}="urn:{j}:{i}"' for i in range(60))
             + ">" for j in range(5)) + "".join(f"</x{j}>" for j in reversed(range(5))),
     "limit max_namespaces_in_scope"),
    ("<d>" * 300 + "</d>" * 300, "nested deeper than 256 (limit max_depth)"),
])
def test_messages_over_the_xml_limits_are_refused(inner, words):
    with pytest.raises(XRoadError) as exc:
        parse_envelope(_message(inner), "text/xml; charset=utf-8")
    assert exc.value.code == errors.INVALID_XML
    assert words in exc.value.message


@pytest.mark.parametrize("inner,words", [
    ("<x " + " ".join(f'a{i}="1"' for i in range(300)) + "/>", "limit max_attributes"),
    # 'xmlns' is not a byte sequence of UTF-16 text: the byte counts cannot clear it
    ("<x " + " ".join(f'xmlns:n{i}="urn:{i}"' for i in range(65)) + "/>",
     "limit max_namespaces"),
])
def test_limits_hold_for_utf16_too(inner, words):
    data = ("\ufeff" + _message(inner).decode().replace('encoding="UTF-8"',
                                                        'encoding="UTF-16"')).encode("utf-16-le")
    with pytest.raises(XRoadError) as exc:
        parse_envelope(data, "text/xml")
    assert words in exc.value.message


def test_a_message_at_the_limits_is_accepted():
    inner = ("<x " + " ".join(f'a{i}="1"' for i in range(256)) + "/>"
             + "<d>" * 200 + "</d>" * 200)
    assert parse_envelope(_message(inner), "text/xml; charset=utf-8").xroad.id


def test_a_text_node_over_10_mb_is_read_when_the_message_is_under_the_body_limit():
    """One size limit: libxml2's own 10 MB text-node limit no longer applies."""
    big = "1" * (12 * 1024 * 1024)
    env = parse_envelope(_message(f"<big>{big}</big>"), "text/xml; charset=utf-8")
    assert len(env.body.find(".//big").text) == len(big)
