"""SOAP with attachments and MTOM across two security servers: real sockets, mutual TLS.

The backend records what it received and answers a multipart response echoing every
attachment; both directions must carry the attachments byte for byte, covered by the
signatures through their signed digests.
"""
from __future__ import annotations

import base64
import hashlib
import threading

import pytest
from cheroot import wsgi
from lxml import etree

from tests.fixtures.pki import free_port
from tests.http_helpers import SOAP, post
from tests.server.edges.test_attacks import server_proxy_url, tls_context
from tests.xroad_requests import request
from tunduk.server.core import detached, mime
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.messagelog import NullLog

XRD = "http://x-road.eu/xsd/xroad.xsd"
ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]
BOUNDARY = "MIME_boundary_4711"
SWA_TYPE = (f'multipart/related; type="text/xml"; start="<soap-root@tunduk>"; '
            f'boundary="{BOUNDARY}"')
MTOM_TYPE = ('multipart/related; type="application/xop+xml"; start="<mtom-root@tunduk>"; '
             'start-info="text/xml"; boundary="uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82"')
BINARY = bytes(range(256)) * 8 + b"\r\n--MIME_boundary_471\r\n\x00"   # near-delimiter too
BIN_HEADERS = (b"Content-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: binary\r\n"
               b"Content-ID: <scan.bin@tunduk>\r\n\r\n")
TEXT_HEADERS = (b"content-id:   <note@tunduk>\r\n"
                b"X-Odd-Header:  spaced\tvalue ;  \r\n"
                b"Content-Type: text/plain;\r\n\tcharset=ISO-8859-1\r\n"
                b"CONTENT-DESCRIPTION: folded\r\n  over two lines\r\n\r\n")
TEXT = b"Bonjour caf\xe9\r\nsecond line  \r\n"


def soap_part_headers(cid: str, media: str = "text/xml; charset=UTF-8") -> bytes:
    return (f"Content-Type: {media}\r\nContent-Transfer-Encoding: 8bit\r\n"
            f"Content-ID: <{cid}>\r\n\r\n").encode()


def multipart(parts: list[tuple[bytes, bytes]], boundary: str = BOUNDARY) -> bytes:
    return mime.join([mime.make_part(h, c) for h, c in parts], boundary)


def swa_request(soap: bytes) -> bytes:
    return multipart([(soap_part_headers("soap-root@tunduk"), soap),
                      (BIN_HEADERS, BINARY), (TEXT_HEADERS, TEXT)])


# -- the backend -------------------------------------------------------------------------
class RecordingBackend:
    """Answers a multipart response that echoes the request's attachments exactly."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        ctype = environ.get("CONTENT_TYPE", "")
        self.received.append((ctype, body))
        if not mime.is_multipart_related(ctype):
            req = etree.fromstring(body)
            req.find(f"{{{SOAP}}}Body")[0].tag = "getBirthRecordResponse"
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
            return [etree.tostring(req)]
        msg = mime.split(body, ctype)
        req = etree.fromstring(msg.root.content)
        resp = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
        resp.append(req.find(f"{{{SOAP}}}Header"))
        rbody = etree.SubElement(resp, f"{{{SOAP}}}Body")
        out = etree.SubElement(rbody, "getBirthRecordResponse")
        etree.SubElement(out, "attachments").text = str(len(msg.attachments))
        root = etree.tostring(resp, xml_declaration=True, encoding="UTF-8")
        parts = [mime.make_part(soap_part_headers("resp-root@backend"), root)]
        parts += list(msg.attachments)
        start_response("200 OK", [
            ("Content-Type", ('multipart/related; type="text/xml"; '
                              'start="<resp-root@backend>"; boundary="RESP_b"'))])
        return [mime.join(parts, "RESP_b")]


@pytest.fixture
def backend():
    app = RecordingBackend()
    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=2)
    server.prepare()
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    app.url = f"http://127.0.0.1:{port}/"
    yield app
    server.stop()
    t.join(5)


@pytest.fixture
def fed(run_federation, backend):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": backend.url}
    return run_federation(services=[svc], access=ACCESS)


# -- through both servers ----------------------------------------------------------------
def test_swa_request_and_response_attachments_pass_byte_for_byte(fed, backend):
    soap = request()
    body = swa_request(soap)
    reply = post(fed.client_url, body, content_type=SWA_TYPE)
    assert reply.status == 200, reply.body[:2000]

    # the backend got the client's attachment parts unchanged, under a Content-Type
    # tunduk wrote (here the same as the client's)
    (ctype, received), = backend.received
    assert ctype == SWA_TYPE
    got = mime.split(received, ctype)
    sent = mime.split(body, SWA_TYPE)
    assert [p.raw for p in got.attachments] == [p.raw for p in sent.attachments]
    assert got.attachments[1].header_block == TEXT_HEADERS
    assert got.attachments[0].content == BINARY
    assert got.root.header_block == mime.root_header_block(sent.root)   # tunduk's own
    assert b"urn:tunduk:" not in got.root.content and b"wsse" not in got.root.content
    assert b"urn:tunduk:" not in received

    # the client gets the backend's multipart answer, attachments unchanged
    ctype = reply.headers["content-type"]
    assert ctype == 'multipart/related; type="text/xml"; start="<resp-root@backend>"; ' \
                    'boundary="RESP_b"'
    answer = mime.split(reply.body, ctype)
    assert answer.root.content_id == "resp-root@backend"
    assert [p.raw for p in answer.attachments] == [p.raw for p in sent.attachments]
    root = etree.fromstring(answer.root.content)
    assert root.findtext(f"{{{SOAP}}}Body/getBirthRecordResponse/attachments") == "2"
    rh = root.find(f"{{{SOAP}}}Header/{{{XRD}}}requestHash")
    # requestHash: over the exact bytes of the first (SOAP) part as the client sent it
    assert rh.text == base64.b64encode(hashlib.sha512(soap).digest()).decode()
    assert b"urn:tunduk:" not in reply.body and b"wsse" not in reply.body


def test_mtom_request_passes_through(fed, backend):
    payload = ('<reg:personalCode>21205199900011</reg:personalCode>'
               '<reg:scan><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
               'href="cid:scan.bin@tunduk"/></reg:scan>')
    soap = request(payload=payload)
    boundary = mime.content_type_params(MTOM_TYPE)["boundary"]
    media = 'application/xop+xml; charset=UTF-8; type="text/xml"'
    body = multipart([(soap_part_headers("mtom-root@tunduk", media), soap),
                      (BIN_HEADERS, BINARY)], boundary)
    reply = post(fed.client_url, body, content_type=MTOM_TYPE)
    assert reply.status == 200, reply.body[:2000]
    (ctype, received), = backend.received
    assert ctype == MTOM_TYPE                    # type, start, start-info kept
    got = mime.split(received, ctype)
    assert got.root.content_type == media.replace("UTF-8", "utf-8")   # as tunduk writes it
    assert got.attachments[0].raw == BIN_HEADERS + BINARY
    include = etree.fromstring(got.root.content).find(
        ".//{http://www.w3.org/2004/08/xop/include}Include")
    assert include.get("href") == "cid:scan.bin@tunduk"
    answer = mime.split(reply.body, reply.headers["content-type"])
    assert answer.attachments[0].raw == BIN_HEADERS + BINARY


def test_plain_request_still_plain(fed, backend):
    reply = post(fed.client_url, request())
    assert reply.status == 200, reply.body[:2000]
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    assert reply.xml().find(f"{{{SOAP}}}Body/getBirthRecordResponse") is not None
    (ctype, received), = backend.received
    assert ctype == "text/xml; charset=utf-8"
    assert b"urn:tunduk:" not in received and b"urn:tunduk:" not in reply.body


@pytest.mark.parametrize("body,ctype,code", [
    (b"--x\r\nContent-Type: text/xml\r\n\r\n<x/>\r\n--x--", "multipart/related",
     "Client.InvalidContentType"),
    (swa_request(request())[:-20], SWA_TYPE, "Client.InvalidMessage"),
    (multipart([(b"Content-Type: application/pdf\r\n\r\n", b"%PDF-1.4")]),
     f"multipart/related; boundary={BOUNDARY}", "Client.InvalidContentType"),
    (multipart([(soap_part_headers("soap-root@tunduk"), b"<not-closed>")]), SWA_TYPE,
     "Client.InvalidXml"),
    (b"--b\r\n\r\n<x/>\r\n--b--", "multipart/form-data; boundary=b",
     "Client.InvalidContentType"),
])
def test_malformed_multipart_gets_a_client_fault(fed, backend, body, ctype, code):
    reply = post(fed.client_url, body, content_type=ctype)
    assert reply.status == 500
    assert reply.fault_code == code, reply.fault_string
    assert backend.received == []


# -- attacks on the server proxy ---------------------------------------------------------
_signature: dict = {}


def signed_multipart(fed) -> tuple[bytes, str]:
    """A signed multipart request; its signature goes with the next send_multipart."""
    conf = fed.files.consumer.conf()
    side = ClientSide(conf, SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert),
                      TrustAnchor.from_pem(conf.federation.ca_certs_pem), NullLog())
    pending = side.prepare(swa_request(request()), SWA_TYPE)
    _signature[id(fed)] = pending.signature
    return pending.body, pending.content_type


def send_multipart(fed, body: bytes, ctype: str):
    headers = {detached.SIGNATURE_HEADER: detached.header_value(_signature.pop(id(fed)))}
    return post(server_proxy_url(fed), body, content_type=ctype, headers=headers,
                context=tls_context(fed))


def test_untampered_signed_multipart_is_accepted(fed, backend):
    body, ctype = signed_multipart(fed)
    reply = send_multipart(fed, body, ctype)
    assert reply.status == 200, reply.body[:2000]
    assert len(backend.received) == 1


def _tampered(fed, change) -> bytes:
    body, ctype = signed_multipart(fed)
    msg = mime.split(body, ctype)
    return mime.join(change(list(msg.parts)), msg.boundary), ctype


def _flip_byte(parts):
    raw = bytearray(parts[1].raw)
    raw[len(raw) // 2] ^= 0x01
    parts[1] = mime.make_part(bytes(raw[:parts[1].header_end]),
                              bytes(raw[parts[1].header_end:]))
    return parts


def _change_part_header(parts):
    p = parts[2]
    parts[2] = mime.make_part(p.header_block.replace(b"ISO-8859-1", b"UTF-8"), p.content)
    return parts


@pytest.mark.parametrize("change,words", [
    (_flip_byte, "changed after signing"),
    (_change_part_header, "changed after signing"),
    (lambda parts: parts[:2], "removed after signing"),
    (lambda parts: parts + [mime.make_part(b"Content-ID: <evil>\r\n\r\n", b"evil")],
     "added after signing"),
    (lambda parts: [parts[0], parts[2], parts[1]], "changed after signing"),
])
def test_tampered_attachments_are_refused(fed, backend, change, words):
    body, ctype = _tampered(fed, change)
    reply = send_multipart(fed, body, ctype)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert words in reply.fault_string
    assert backend.received == []


def test_attachments_stripped_to_plain_message_are_refused(fed, backend):
    body, ctype = signed_multipart(fed)
    root = mime.split(body, ctype)
    # sent under the exact Content-Type signed for the SOAP part, so that only the
    # signed attachment digests can tell
    reply = send_multipart(fed, root.root.content, root.root_content_type())
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "removed after signing" in reply.fault_string
    assert backend.received == []


def test_message_log_keeps_signed_soap_parts_naming_the_attachment_digests(run_federation,
                                                                            backend):
    from tunduk.server.core.exchange import ATTACHMENT
    from tunduk.server.messagelog import envelope_check, store_factory
    from tunduk.server.node import server_id

    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": backend.url}
    fed = run_federation(services=[svc], access=ACCESS, messagelog={"backend": "sqlite"})
    reply = post(fed.client_url, swa_request(request()), content_type=SWA_TYPE)
    assert reply.status == 200, reply.body[:2000]
    want = [base64.b64encode(hashlib.sha256(raw).digest()).decode()
            for raw in (BIN_HEADERS + BINARY, TEXT_HEADERS + TEXT)]
    for node in (fed.consumer, fed.provider):
        store = store_factory(node.conf.messagelog, node.conf.data_dir)()
        try:
            records = list(store.records(server_id(node.conf)))
        finally:
            store.close()
        assert sorted((r.direction, r.side) for r in records) == sorted(
            [("request", records[0].side), ("response", records[0].side)])
        for r in records:
            # the signed SOAP part, not the multipart
            root = etree.fromstring(envelope_check.logged_message(r.envelope))
            digests = [el.text for el in root.iter(ATTACHMENT)]
            assert digests == want
