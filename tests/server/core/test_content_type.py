"""Content-Type values: tunduk reads a charset only where every common parser reads the
same one, and the bytes it passes on read as the message it checked."""
from __future__ import annotations

import codecs
import email
import email.message
import email.policy
import warnings
from typing import Optional

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from tunduk.server.core import content_type, errors
from tunduk.server.core.envelope import document_charset, parse_xml, serialize
from tunduk.server.core.errors import XRoadError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import cgi      # what spyne's WSGI server reads the charset with


def _norm(label: Optional[str]) -> Optional[str]:
    if label is None:
        return None
    try:
        return codecs.lookup(label.strip()).name
    except LookupError:
        return "unknown:" + label.strip().lower()


def others(value: str) -> dict[str, Optional[str]]:
    """The charset each other parser reads from ``value``, normalised."""
    compat = email.message.Message()
    compat["Content-Type"] = value
    modern = email.message_from_string(f"Content-Type: {value}\n\n",
                                       policy=email.policy.default)
    charset = compat.get_param("charset")
    if isinstance(charset, tuple):            # RFC 2231 triple
        charset = email.utils.collapse_rfc2231_value(charset)
    return {"cgi": _norm(cgi.parse_header(value)[1].get("charset")),
            "email compat32": _norm(charset),
            "email default": _norm(modern["content-type"].params.get("charset"))}


def tunduk_charset(value: str) -> Optional[str]:
    """tunduk's charset for ``value`` (normalised as others() does), or raises."""
    label = content_type.parse(value).params.get("charset")
    if label is not None:
        content_type.charset_name(label, "test")
    return _norm(label)


WS = st.sampled_from(["", " ", "  ", "\t"])
NAMES = st.sampled_from(["charset", "Charset", "CHARSET", "charset*", "charset*0",
                         "type", "boundary", "start", "action", "x-a"])
VALUES = st.sampled_from(["utf-8", "UTF-8", "utf8", "utf-7", "iso-8859-1", "windows-1251",
                          "koi8-r", "utf-16", "x", "utf-8''utf-7", "us-ascii"])


@st.composite
def parameter(draw) -> str:
    name, value = draw(NAMES), draw(VALUES)
    quoting = draw(st.sampled_from(["plain", "quoted", "escaped", "semicolon", "open",
                                    "comma"]))
    if quoting == "quoted":
        value = f'"{value}"'
    elif quoting == "escaped":
        value = '"' + value.replace("-", "\\-", 1) + '"'
    elif quoting == "semicolon":
        value = f'"{value};charset=utf-7"'
    elif quoting == "open":
        value = f'"{value}'
    elif quoting == "comma":
        value = f"{value}, text/xml"
    return f"{draw(WS)};{draw(WS)}{name}{draw(st.sampled_from(['=', ' =', '= ']))}{value}"


@st.composite
def header(draw) -> str:
    media = draw(st.sampled_from(["text/xml", "TEXT/XML", "application/xml", "text/xml "]))
    params = draw(st.lists(parameter(), max_size=4))
    tail = draw(st.sampled_from(["", ";", " ; ", ";;"]))
    return media + "".join(params) + tail


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(header(), st.text(max_size=60).map(lambda t: "text/xml;" + t)))
@example("text/xml; charset=utf-8; charset=utf-7")
@example('text/xml; charset="utf-8"; charset=utf-7')
@example("text/xml; charset=utf-8; charset*=utf-8''utf-7")
@example('text/xml; a="x;charset=utf-7"; charset=utf-8')
@example('text/xml; charset="utf-\\8"')
def test_parsers_agree_on_the_charset_or_tunduk_refuses(value):
    try:
        ours = tunduk_charset(value)
    except XRoadError as exc:
        assert exc.code == errors.INVALID_CONTENT_TYPE
        return
    assert others(value) == dict.fromkeys(others(value), ours), value


# -- the document: header, byte order mark and XML declaration together ----------------
TEXT = ('<e xmlns:r="urn:r"><r:a>+ADw-r:hidden+AD4-x+ADw-/r:hidden+AD4-</r:a>'
        "<r:b>\u00e9\u0416</r:b></e>")
ENCODINGS = ["utf-8", "utf-16-le", "utf-16-be", "iso-8859-1", "windows-1251", "utf-7",
             "koi8-r"]


def _document(writer: str, bom: bool, declared: Optional[str]) -> bytes:
    text = TEXT
    if declared is not None:
        text = f'<?xml version="1.0" encoding="{declared}"?>' + text
    if bom and writer.startswith("utf-16"):
        text = "\ufeff" + text
    data = text.encode(writer, "replace")
    if bom and writer == "utf-8":
        data = b"\xef\xbb\xbf" + data
    return data


@settings(max_examples=300, deadline=None)
@given(writer=st.sampled_from(ENCODINGS), bom=st.booleans(),
       declared=st.one_of(st.none(), st.sampled_from(ENCODINGS + ["UTF-16", "ebcdic-cp-us"])),
       charset=st.one_of(st.none(), st.sampled_from(ENCODINGS + ["utf-16"])))
@example(writer="utf-8", bom=False, declared="iso-8859-1", charset="utf-8")
@example(writer="iso-8859-1", bom=False, declared="utf-8", charset="iso-8859-1")
@example(writer="utf-8", bom=True, declared=None, charset="windows-1251")
@example(writer="utf-16-le", bom=True, declared="utf-8", charset=None)
@example(writer="utf-7", bom=False, declared="utf-7", charset=None)
def test_what_is_passed_on_reads_as_what_tunduk_checked(writer, bom, declared, charset):
    """Whatever the header, mark and declaration say, the bytes tunduk passes on (the
    message itself if UTF-8, else its UTF-8 serialisation, always as charset=utf-8) are
    read by a parser that sees only them, by cgi/spyne, and by lxml as the document
    tunduk parsed."""
    data = _document(writer, bom, declared)
    ctype = "text/xml" if charset is None else f"text/xml; charset={charset}"
    try:
        ours = parse_xml(data, ctype)
    except XRoadError as exc:
        assert exc.code in (errors.INVALID_CONTENT_TYPE, errors.INVALID_XML)
        return
    passed_on = data if document_charset(data, ctype) == "utf-8" else serialize(ours)
    checked = etree.tostring(ours, method="c14n")
    alone = etree.fromstring(passed_on, etree.XMLParser(resolve_entities=False))
    assert etree.tostring(alone, method="c14n") == checked
    spyne_charset = cgi.parse_header("text/xml; charset=utf-8")[1]["charset"]
    decoded = passed_on.decode(spyne_charset)
    if decoded.startswith("\ufeff"):
        decoded = decoded[1:]
    if decoded.startswith("<?xml"):
        decoded = decoded.split("?>", 1)[1]
    assert etree.tostring(etree.fromstring(decoded), method="c14n") == checked


@pytest.mark.parametrize("value,media,params", [
    ("text/xml", "text/xml", {}),
    ('TEXT/XML;Charset="UTF-8"', "text/xml", {"charset": "UTF-8"}),
    ("text/xml ; charset=utf-8 ;", "text/xml", {"charset": "utf-8"}),
    ('multipart/related; type="application/xop+xml"; start="<r@x>"; '
     'start-info="text/xml"; boundary="uuid:1234"', "multipart/related",
     {"type": "application/xop+xml", "start": "<r@x>", "start-info": "text/xml",
      "boundary": "uuid:1234"}),
])
def test_parse(value, media, params):
    ct = content_type.parse(value)
    assert (ct.media_type, dict(ct.params)) == (media, params)


@pytest.mark.parametrize("value,words", [
    ("text/xml; charset=utf-8; charset=utf-7", "charset is given more than once"),
    ("text/xml; Charset=utf-8; CHARSET=utf-7", "charset is given more than once"),
    ("text/xml; charset*=utf-8''utf-8", "RFC 2231"),
    ("text/xml; charset = utf-8", "spaces around '='"),
    ('text/xml; charset="utf\\-8"', "backslash"),
    ('text/xml; x="a;charset=utf-7"', "a ';'"),
    ("text/xml; charset", "has no '=value'"),
    ("text/xml; charset=utf-8, text/xml", "is not a ';'-separated parameter"),
    ("xml", "media type"),
    ("", "missing"),
])
def test_ambiguous_or_malformed_values_are_refused(value, words):
    with pytest.raises(XRoadError) as exc:
        content_type.parse(value)
    assert exc.value.code == errors.INVALID_CONTENT_TYPE
    assert words in exc.value.message


def test_header_quotes_every_value_but_the_charset():
    ct = content_type.ContentType("multipart/related")
    assert ct.header(type="text/xml", start="<a@b>", start_info=None, boundary="b-1") == \
        'multipart/related; type="text/xml"; start="<a@b>"; boundary="b-1"'
    assert content_type.ContentType("text/xml").header(charset="utf-8") == \
        "text/xml; charset=utf-8"
