"""multipart/related split and join: exact bytes kept, malformed bodies refused clearly."""
from __future__ import annotations

import pytest

from tunduk.server.core import errors, mime
from tunduk.server.core.errors import XRoadError

SOAP_PART = b'<?xml version="1.0"?><e:Envelope xmlns:e="urn:x"><e:Body/></e:Envelope>'
BINARY = bytes(range(256)) * 3 + b"\r\n--notTheBoundary\r\n" + b"\x00\xff"
ODD_HEADERS = (b"content-id:   <note@example.org>\r\n"
               b"X-Odd:  spaced\tvalue ;\r\n"
               b"Content-Type: text/plain;\r\n\tcharset=ISO-8859-1\r\n\r\n")
CT = ('multipart/related; type="text/xml"; start="<soap@example.org>"; '
      'boundary="MIME_b0undary"')


def swa_body() -> bytes:
    return (b"preamble to ignore\r\n"
            b"--MIME_b0undary\r\n"
            b"Content-Type: text/xml; charset=UTF-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"Content-ID: <soap@example.org>\r\n\r\n" + SOAP_PART +
            b"\r\n--MIME_b0undary\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n"
            b"Content-ID: <bin@example.org>\r\n\r\n" + BINARY +
            b"\r\n--MIME_b0undary\r\n" + ODD_HEADERS + b"caf\xe9\r\n"
            b"\r\n--MIME_b0undary--\r\nepilogue\r\n")


def test_split_keeps_exact_bytes_of_every_part():
    msg = mime.split(swa_body(), CT)
    assert msg.boundary == "MIME_b0undary"
    assert msg.root_index == 0
    assert msg.root.content == SOAP_PART
    assert msg.root.content_id == "soap@example.org"
    binary, text = msg.attachments
    assert binary.content == BINARY
    assert binary.content_id == "bin@example.org"
    assert binary.header_block.startswith(b"Content-Type: application/octet-stream\r\n")
    assert text.header_block == ODD_HEADERS
    assert text.content == b"caf\xe9\r\n"
    assert text.content_id == "note@example.org"
    assert text.content_type == "text/plain; charset=ISO-8859-1"   # folded line unfolded


def test_join_of_split_parts_is_the_body_without_preamble_and_epilogue():
    body = swa_body()
    msg = mime.split(body, CT)
    joined = mime.join(msg.parts, msg.boundary)
    start = body.index(b"--MIME_b0undary")
    end = body.index(b"--MIME_b0undary--") + len(b"--MIME_b0undary--\r\n")
    assert joined == body[start:end]
    again = mime.split(joined, CT)
    assert [p.raw for p in again.parts] == [p.raw for p in msg.parts]


def test_replace_root_keeps_attachments_and_writes_its_own_content_type():
    msg = mime.split(swa_body(), CT + "; x-unknown=1")
    body, ctype, root_type = mime.replace_root(msg, b"<new/>")
    assert ctype == ('multipart/related; type="text/xml"; start="<soap@example.org>"; '
                     'boundary="MIME_b0undary"')
    out = mime.split(body, ctype)
    assert out.root.content == b"<new/>"
    assert out.root.header_block == (b"Content-Type: text/xml; charset=utf-8\r\n"
                                     b"Content-Transfer-Encoding: 8bit\r\n"
                                     b"Content-ID: <soap@example.org>\r\n\r\n")
    assert root_type == out.root_content_type() == "text/xml; charset=utf-8"
    assert [p.raw for p in out.attachments] == [p.raw for p in msg.attachments]


def test_replace_root_changes_boundary_only_on_collision():
    msg = mime.split(swa_body(), CT)
    body, ctype, _ = mime.replace_root(msg, b"<a>\r\n--MIME_b0undary</a>")
    assert "MIME_b0undary" not in ctype and 'type="text/xml"' in ctype and "start=" in ctype
    out = mime.split(body, ctype)
    assert out.root.content == b"<a>\r\n--MIME_b0undary</a>"
    assert [p.raw for p in out.attachments] == [p.raw for p in msg.attachments]


def test_start_parameter_selects_a_root_that_is_not_first():
    body = (b"--b\r\nContent-ID: <att>\r\nContent-Type: text/plain\r\n\r\nhello"
            b"\r\n--b\r\nContent-ID: <root>\r\nContent-Type: text/xml\r\n\r\n<x/>"
            b"\r\n--b--")
    msg = mime.split(body, 'multipart/related; boundary=b; start="<root>"')
    assert msg.root_index == 1 and msg.root.content == b"<x/>"
    assert [p.content for p in msg.attachments] == [b"hello"]


def test_mtom_root_and_parameters():
    ct = ('multipart/related; type="application/xop+xml"; start="<r@x>"; '
          'start-info="text/xml"; boundary="uuid:1234"')
    body = (b"--uuid:1234\r\nContent-Type: application/xop+xml; charset=UTF-8; "
            b'type="text/xml"\r\nContent-ID: <r@x>\r\n\r\n<x/>\r\n--uuid:1234--\r\n')
    msg = mime.split(body, ct)
    assert mime.content_type_params(ct) == {"type": "application/xop+xml", "start": "<r@x>",
                                            "start-info": "text/xml",
                                            "boundary": "uuid:1234"}
    assert msg.root_content_type().startswith("application/xop+xml")
    assert msg.attachments == ()


def test_root_header_block_is_written_fresh():
    latin = mime.make_part(b"Content-Type: text/xml; charset=ISO-8859-1\r\n"
                           b"X-Other: dropped\r\nContent-ID: <r>\r\n\r\n", b"<x/>")
    assert mime.root_header_block(latin) == (
        b"Content-Type: text/xml; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"Content-ID: <r>\r\n\r\n")


@pytest.mark.parametrize("root_charset", [b"UTF-8", b"ISO-8859-1"])
def test_replace_root_names_the_root_type_the_receiver_reads(root_charset):
    body = swa_body().replace(b"charset=UTF-8", b"charset=" + root_charset, 1)
    msg = mime.split(body, CT)
    assert msg.root.content_type.endswith(root_charset.decode())
    out, ctype, root_type = mime.replace_root(msg, SOAP_PART)
    again = mime.split(out, ctype)
    assert root_type == again.root_content_type()
    assert "ISO-8859-1" not in root_type
    assert again.root.content == SOAP_PART and again.attachments == msg.attachments


ROOT = b"Content-Type: text/xml\r\nContent-ID: <r>\r\n\r\n<x/>"


@pytest.mark.parametrize("body,ctype,code,words", [
    # parameters a parser could read differently
    (b"--b\r\n" + ROOT + b"\r\n--b--", "multipart/related; boundary=b; boundary=c",
     errors.INVALID_CONTENT_TYPE, "boundary is given more than once"),
    (b"--b\r\n" + ROOT + b"\r\n--b--",
     'multipart/related; boundary=b; start="<r>"; START="<a>"',
     errors.INVALID_CONTENT_TYPE, "start is given more than once"),
    (b"--b\r\n" + ROOT + b"\r\n--b--", 'multipart/related; boundary=b; type*=x',
     errors.INVALID_CONTENT_TYPE, "RFC 2231"),
    (b"--b\r\n" + ROOT + b"\r\n--b--", 'multipart/related; boundary="b\\"',
     errors.INVALID_CONTENT_TYPE, "backslash"),
    # part headers a parser could read differently
    (b"--b\r\nContent-Type: text/xml\r\nContent-Type: text/plain\r\n\r\n<x/>\r\n--b--",
     "multipart/related; boundary=b", errors.INVALID_MESSAGE, "Content-Type twice"),
    (b"--b\r\nContent-Type: text/xml; charset=utf-8; charset=utf-7\r\n\r\n<x/>\r\n--b--",
     "multipart/related; boundary=b", errors.INVALID_CONTENT_TYPE, "more than once"),
    (b"--b\r\n" + ROOT + b"\r\n--b\r\nContent-ID: <r>\r\n\r\nother\r\n--b--",
     'multipart/related; boundary=b; start="<r>"', errors.INVALID_MESSAGE,
     "two parts of the multipart/related message have Content-ID <r>"),
    (b"--b\r\nContent-ID: <a>\r\nContent-ID: <r>\r\n\r\n<x/>\r\n--b--",
     'multipart/related; boundary=b; start="<r>"', errors.INVALID_MESSAGE,
     "Content-ID twice"),
])
def test_ambiguous_multipart_is_refused(body, ctype, code, words):
    with pytest.raises(XRoadError) as exc:
        mime.split(body, ctype)
    assert exc.value.code == code
    assert words in exc.value.message


@pytest.mark.parametrize("body,ctype,code,words", [
    (b"--b\r\n\r\n<x/>\r\n--b--", "multipart/related", errors.INVALID_CONTENT_TYPE,
     "boundary"),
    (SOAP_PART, 'multipart/related; boundary="MIME_boundary"', errors.INVALID_CONTENT_TYPE,
     "no such delimiter"),
    (b"--b\r\nContent-Type: text/xml\r\n\r\n<x/>\r\n--b\r\n\r\nmore",
     "multipart/related; boundary=b", errors.INVALID_MESSAGE, "closing delimiter"),
    (b"--b\r\nContent-Type: text/xml\r\n\r\n<x/>",
     "multipart/related; boundary=b", errors.INVALID_MESSAGE, "closing delimiter"),
    (b"--b\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--",
     "multipart/related; boundary=b", errors.INVALID_CONTENT_TYPE, "root part"),
    ((b"--b\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      b"PHgvPg==\r\n--b--"),
     "multipart/related; boundary=b", errors.INVALID_CONTENT_TYPE, "8bit"),
    (b"--b\r\nContent-ID: <a>\r\n\r\n<x/>\r\n--b--",
     'multipart/related; boundary=b; start="<nope>"', errors.INVALID_MESSAGE, "<nope>"),
    (b"--b\r\nContent-Type: text/xml<x/>\r\n--b--",
     "multipart/related; boundary=b", errors.INVALID_MESSAGE, "blank line"),
    (b"--b--\r\n", "multipart/related; boundary=b", errors.INVALID_MESSAGE, "no parts"),
])
def test_malformed_multipart(body, ctype, code, words):
    with pytest.raises(XRoadError) as exc:
        mime.split(body, ctype)
    assert exc.value.code == code
    assert words in exc.value.message


def test_boundary_prefix_inside_content_is_not_a_delimiter():
    body = (b"--b\r\nContent-Type: text/xml\r\n\r\n<x/>\r\n--bb\r\n--b-x\r\n--b--")
    msg = mime.split(body, "multipart/related; boundary=b")
    assert msg.root.content == b"<x/>\r\n--bb\r\n--b-x"


FORGED = b"<forged/>"


def test_the_root_is_sent_first_whatever_start_named():
    """spyne takes the first part as the envelope, whatever ``start`` says: a forged
    envelope before the root tunduk checked reached the backend."""
    body = (b"--b\r\nContent-Type: text/xml\r\nContent-ID: <att1>\r\n\r\n" + FORGED +
            b"\r\n--b\r\nContent-Type: text/xml\r\nContent-ID: <root>\r\n\r\n<x/>"
            b"\r\n--b--")
    msg = mime.split(body, 'multipart/related; type="text/xml"; start="<root>"; boundary=b')
    out, ctype, _ = mime.replace_root(msg, b"<checked/>")
    again = mime.split(out, ctype)
    assert again.root_index == 0 and again.root.content == b"<checked/>"
    assert again.parts[0].content == b"<checked/>"
    assert [p.raw for p in again.attachments] == [p.raw for p in msg.attachments]


@pytest.mark.parametrize("body,words", [
    # a delimiter after a lone CR: the email package splits there, tunduk did not
    (b"--b\r\nContent-Type: text/xml\r\nContent-ID: <root>\r\n\r\n<x/>"
     b"\r\n--b\r\nContent-ID: <a>\r\n\r\ndata\r--b\r\nContent-Type: text/xml\r\n"
     b"Content-ID: <root2>\r\n\r\n<forged/>\r\n--b--", "after a carriage return"),
    (b"--b\r\nContent-Type: text/xml\rContent-ID: <root>\r\n\r\n<x/>\r\n--b--",
     "carriage return"),
])
def test_bodies_parsers_split_differently_are_refused(body, words):
    with pytest.raises(XRoadError) as exc:
        mime.split(body, 'multipart/related; boundary=b').root.content_type
    assert exc.value.code == errors.INVALID_MESSAGE
    assert words in exc.value.message


def test_a_continuation_line_is_not_a_header():
    part = mime.make_part(b"Content-Type: text/plain;\r\n Content-ID: <fake>\r\n\r\n", b"x")
    assert part.content_id is None
    assert part.content_type == "text/plain; Content-ID: <fake>"
